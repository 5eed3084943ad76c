"""Error statuses, limits, CORS and disconnects of the OpenAI-compatible front door.

Real stack (ledger, cache, router) plus a tier whose upstream is down, so
"no tier available" is a real failure, not a simulated one.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logcheck import sensitive
from openai.types.chat import ChatCompletionMessageParam
from stack import Stack, frontier_tiers, running_stack

from rationer.platform.net import free_port
from services.router.http.app import start_http
from services.router.settings import HttpSettings, TierSettings

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello in three words."}]
sensitive("Say hello in three words.", "Write a long story about a cat.")  # never in a log (tests/logcheck.py)


@pytest.fixture(scope="module")
async def stack(frontier_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    dead = TierSettings(name="frontier-dead", kind="frontier", rank=2, model="nowhere",
                        base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)  # fmt: skip
    tiers = [*frontier_tiers(frontier_base_url), dead]
    async with running_stack(tmp_path_factory.mktemp("http-err"), frontier_base_url=frontier_base_url,
                             tiers=tiers) as s:  # fmt: skip
        yield s


def client(stack: Stack, key: str = "") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{stack.http_base_url}/v1", api_key=key or stack.api_key, max_retries=0)


async def post(stack: Stack, body: Any, *, key: str | None = None, **headers: str) -> httpx.Response:
    secret = stack.api_key if key is None else key
    hdrs = {**({"Authorization": f"Bearer {secret}"} if secret else {}), **headers}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=60) as http:
        return await http.post("/v1/chat/completions", content=content, headers=hdrs)


def error_of(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert resp.headers["x-request-id"]
    err: dict[str, Any] = body["error"]
    return err


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        ([1, 2], "JSON object"),
        ({"model": "auto", "messages": []}, "messages is empty"),
        ({"model": "auto"}, "'messages' is required"),
        ({"model": "auto", "messages": HELLO, "max_tokens": 0}, "at least 1"),
        ({"model": "auto", "messages": HELLO, "max_tokens": 100_000}, "at most 4096"),
        ({"model": "auto", "messages": HELLO, "temperature": "hot"}, "'temperature' must be a number"),
        ({"model": "auto", "messages": HELLO, "n": 3}, "exactly one choice"),
        ({"model": "auto", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "not a text part"),
        ({"model": "auto", "messages": [{"role": "tool", "content": "x"}]}, "use one of system, user, assistant"),
    ],
)
async def test_invalid_request_is_400_in_openai_shape(stack: Stack, body: Any, needle: str) -> None:
    resp = await post(stack, body)
    assert resp.status_code == 400
    err = error_of(resp)
    assert err["type"] == "invalid_request_error" and needle in err["message"]


async def test_auth_and_model_errors_raise_the_sdk_classes(stack: Stack) -> None:
    limited = await stack.new_key(org="limited-org", allowed_tiers=["frontier-mini"])
    with pytest.raises(openai.AuthenticationError) as bad_key:
        async with client(stack, "rk_not_a_real_key") as c:
            await c.chat.completions.create(model="auto", messages=HELLO, max_tokens=2)
    assert bad_key.value.status_code == 401
    missing = await post(stack, {"model": "auto", "messages": HELLO}, key="")
    assert missing.status_code == 401 and "Authorization" in error_of(missing)["message"]
    # The key is checked before the body is read: a bad key with a bad body is 401.
    for path in ("/v1/chat/completions", "/v1/embeddings"):
        async with httpx.AsyncClient(base_url=stack.http_base_url) as http:
            both = await http.post(path, content=b"{not json", headers={"Authorization": "Bearer rk_nope"})
        assert both.status_code == 401, path
    async with client(stack, limited.secret) as c:
        with pytest.raises(openai.PermissionDeniedError, match="not allowed"):
            await c.chat.completions.create(model="frontier", messages=HELLO, max_tokens=2)
        with pytest.raises(openai.NotFoundError, match="unknown tier or model 'gpt-nope'"):
            await c.chat.completions.create(model="gpt-nope", messages=HELLO, max_tokens=2)


async def test_body_over_the_limit_is_413(stack: Stack) -> None:
    huge = {"model": "auto", "messages": [{"role": "user", "content": "x" * (1024 * 1024 + 10)}]}
    resp = await post(stack, huge)
    assert resp.status_code == 413
    assert "larger than" in error_of(resp)["message"]


async def test_budget_running_out_is_429_with_retry_after(stack: Stack) -> None:
    key = await stack.new_key(org="budget-org", allowed_tiers=["frontier"])
    # Room for one hold (the frontier tier has no tokenizer: its hold counts
    # the prompt's bytes plus a template allowance, 169 tokens here, ~462k
    # nano-USD), not for a second one after the first call's charge.
    await stack.ledger.admin.set_budget("user", key.user_id, unit="usd", period="daily", hard_limit=500_000)
    body = {"model": "frontier", "messages": HELLO, "max_tokens": 4, "no_cache": True}
    first = await post(stack, body, key=key.secret)
    assert first.status_code == 200
    denied = await post(stack, body, key=key.secret)
    assert denied.status_code == 429
    err = error_of(denied)
    assert err["code"] == "insufficient_quota" and err["type"] == "rate_limit_error"
    limit = denied.headers["x-rationer-limit"]
    assert limit.startswith("budget") and limit in err["message"]
    assert "resets at" in err["message"] and denied.headers["x-rationer-resets-at"] in err["message"]
    assert err["message"].count(denied.headers["x-rationer-resets-at"]) == 1
    assert int(denied.headers["Retry-After"]) >= 1
    # A daily budget will not free up within a client's retry window.
    assert denied.headers["x-should-retry"] == "false"
    # Streaming fails the same way, before any event is sent.
    async with client(stack, key.secret) as c:
        with pytest.raises(openai.RateLimitError):
            await c.chat.completions.create(
                model="frontier", messages=HELLO, max_tokens=4, stream=True, extra_body={"no_cache": True}
            )


async def test_rate_limit_is_429_naming_the_limit(stack: Stack) -> None:
    key = await stack.new_key(org="rpm-org")
    await stack.ledger.admin.set_rate_limit("key", key.key_id, rpm=1)
    body = {"model": "frontier-mini", "messages": HELLO, "max_tokens": 2, "no_cache": True}
    assert (await post(stack, body, key=key.secret)).status_code == 200
    limited = await post(stack, body, key=key.secret)
    assert limited.status_code == 429
    err = error_of(limited)
    assert err["code"] == "rate_limit_exceeded"
    assert limited.headers["x-rationer-limit"] in err["message"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["x-should-retry"] == "true"


async def test_no_tier_available_is_503(stack: Stack) -> None:
    key = await stack.new_key(org="dead-org", allowed_tiers=["frontier-dead"])
    resp = await post(stack, {"model": "auto", "messages": HELLO, "max_tokens": 2, "no_cache": True}, key=key.secret)
    assert resp.status_code == 503
    assert error_of(resp)["type"] == "service_unavailable_error"


async def test_deadline_is_504(stack: Stack) -> None:
    resp = await post(stack, {"model": "auto", "messages": HELLO, "max_tokens": 2}, **{"x-rationer-timeout": "0.01"})
    assert resp.status_code == 504
    assert error_of(resp)["code"] == "timeout"
    bad = await post(stack, {"model": "auto", "messages": HELLO}, **{"x-rationer-timeout": "soon"})
    assert bad.status_code == 400


async def _held(stack: Stack, user_id: str) -> tuple[int, int]:
    (budget,) = await stack.ledger.admin.list_budgets("user", user_id)
    return budget.held, budget.spent


async def test_disconnect_mid_stream_bills_what_was_delivered(stack: Stack) -> None:
    # Issue 12 item 1: this test used to assert spent == 0, i.e. that a caller
    # who hangs up gets the text so far for free.
    key = await stack.new_key(org="disconnect-org", allowed_tiers=["frontier"])
    await stack.ledger.admin.set_budget("user", key.user_id, unit="usd", period="monthly", hard_limit=10**12)
    body = {"model": "frontier", "messages": [{"role": "user", "content": "Write a long story about a cat."}],
            "max_tokens": 400, "stream": True, "no_cache": True}  # fmt: skip
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=60) as http:
        headers = {"Authorization": f"Bearer {key.secret}", "x-request-id": "hangup-1"}
        req = http.build_request("POST", "/v1/chat/completions", json=body, headers=headers)
        resp = await http.send(req, stream=True)
        assert resp.status_code == 200
        delivered = ""
        # Keep a reference: an abandoned aiter_lines() generator is finalized
        # at once, which closes the response, i.e. hangs up before we look.
        lines = resp.aiter_lines()
        async for line in lines:
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                delivered += json.loads(line[6:])["choices"][0]["delta"]["content"]
                if len(delivered) >= 20:
                    break
        held_mid_stream, _ = await _held(stack, key.user_id)
        await resp.aclose()  # hang up mid-answer
    assert delivered and held_mid_stream > 0
    for _ in range(300):  # the commit is made by the cancelled handler, not by us
        held, spent = await _held(stack, key.user_id)
        if held == 0:
            break
        await asyncio.sleep(0.05)
    charges = [e for e in await stack.ledger.admin.list_events(kind="charge") if e.key_id == key.key_id]
    assert held == 0 and len(charges) == 1, "one charge, and no hold left"
    (charge,) = charges
    assert spent == charge.cost.nano_usd > 0 and "finish=client_disconnected" in charge.detail
    # The frontier tier has no tokenizer here: at least the delivered text,
    # counted by the byte bound, never past max_tokens.
    assert len(delivered.encode()) <= charge.completion_tokens <= 400


async def test_cors_is_off_by_default_and_configurable(stack: Stack) -> None:
    origin = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=60) as http:
        default = await http.options("/v1/chat/completions", headers=origin)
    assert "access-control-allow-origin" not in default.headers
    runner = await start_http(stack.core, HttpSettings(listen="127.0.0.1:0", cors_origins=["https://app.example"]))
    try:
        async with httpx.AsyncClient(base_url=runner.base_url, timeout=60) as http:
            pre = await http.options("/v1/chat/completions", headers=origin)
            other = await http.options("/v1/chat/completions", headers={**origin, "Origin": "https://evil.example"})
            get = await http.get("/v1/models", headers={"Origin": "https://app.example",
                                                         "Authorization": f"Bearer {stack.api_key}"})  # fmt: skip
            body = {"model": "frontier-mini", "messages": HELLO, "max_tokens": 2, "stream": True}
            async with http.stream("POST", "/v1/chat/completions", json=body, headers={
                "Origin": "https://app.example", "Authorization": f"Bearer {stack.api_key}"}) as streamed:  # fmt: skip
                stream_headers = streamed.headers
                await streamed.aread()
    finally:
        await runner.stop()
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "https://app.example"
    assert other.status_code == 403
    assert get.status_code == 200 and get.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-rationer-cost-usd" in get.headers["access-control-expose-headers"]
    # Streams too: a browser can read x-request-id, the one header a stream carries.
    assert stream_headers["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in stream_headers["access-control-expose-headers"] and stream_headers["vary"] == "Origin"


# ---- x-request-id: refused, not replaced (services/router/request_ids.py) ----


async def test_an_invalid_request_id_is_400_not_silently_replaced(stack: Stack) -> None:
    body = {"model": "auto", "messages": HELLO, "max_tokens": 2}
    for rid, needle in (("a#local-large", "reserves"), ("x" * 65, "got 65 characters"), ("a b", "1-64 characters")):
        resp = await post(stack, body, **{"x-request-id": rid})
        assert resp.status_code == 400
        err = error_of(resp)
        assert err["param"] == "x-request-id" and needle in err["message"]
        assert resp.headers["x-request-id"] != rid  # the refusal names the call with a fresh id
    ok = await post(stack, {**body, "no_cache": True}, **{"x-request-id": "caller.id:42-ok_"})
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "caller.id:42-ok_"


# Header values travel as latin-1 text: generate from all of it but controls.
_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                       min_size=1, max_size=80).map(str.strip).filter(bool)  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rid=_HEADER_TEXT)
async def test_generated_request_ids_get_200_or_400_by_the_rule(stack: Stack, rid: str) -> None:
    valid = re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", rid) is not None
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=30) as http:
        resp = await http.get("/v1/models", headers={"Authorization": f"Bearer {stack.api_key}",
                                                     "x-request-id": rid.encode("latin-1")})  # fmt: skip
    assert resp.status_code == (200 if valid else 400)
    if not valid:
        assert error_of(resp)["param"] == "x-request-id"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "auto", "messages": []}, "messages"),
        ({"model": "auto"}, "messages"),
        ({"model": "auto", "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"model": "auto", "messages": HELLO, "max_completion_tokens": 100_000}, "max_tokens"),
        ({"model": "auto", "messages": HELLO, "temperature": "hot"}, "temperature"),
        ({"model": "auto", "messages": HELLO, "temperature": 7}, "temperature"),
        ({"model": "auto", "messages": HELLO, "n": 3}, "n"),
        ({"model": 5, "messages": HELLO}, "model"),
        ({"model": "auto", "messages": HELLO, "stop": 3}, "stop"),
        ({"model": "auto", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
         "messages[0].content[0]"),
        ({"model": "auto", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"model": "no-such-model", "messages": HELLO}, "model"),
    ],
)
async def test_openai_errors_name_the_field_in_param(stack: Stack, body: Any, param: str) -> None:
    resp = await post(stack, body)
    assert resp.status_code in (400, 404)
    assert error_of(resp)["param"] == param


async def test_an_unknown_path_is_404_error_json_naming_the_path(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=60) as http:
        resp = await http.get("/v2/chat/completions", headers={"Authorization": f"Bearer {stack.api_key}"})
    assert resp.status_code == 404
    err = error_of(resp)
    assert err["code"] == "not_found" and "GET /v2/chat/completions" in err["message"] and "/v1" in err["message"]
