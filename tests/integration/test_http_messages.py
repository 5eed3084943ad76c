"""The Anthropic Messages door with the official ``anthropic`` client, against a real stack.

One stack per module (ledger, cache, router with gRPC + HTTP) with frontier
tiers on a real OpenAI-compatible upstream (llama_cpp.server + SmolLM2), a
``kind = "anthropic"`` tier on the local Messages wire server
(anthropic_wire.py), and a tier whose upstream is down. Every answer's usage
and cost are checked against what the ledger recorded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import pytest
from anthropic_wire import Fault, WireServer, anthropic_wire_server
from logcheck import sensitive
from stack import Stack, frontier_tiers, running_stack

from rationer.api.ledger.v1 import ledger_pb2
from rationer.platform.net import free_port
from services.router.settings import TierSettings

HELLO: list[Any] = [{"role": "user", "content": "Say hello in three words."}]
STORY = "Write a long story about a cat."
sensitive("Say hello in three words.", STORY)  # never in a log (tests/logcheck.py)
WIRE_KEY, WIRE_MODEL = "sk-ant-wire", "claude-wire"
NO_CACHE = {"Cache-Control": "no-cache"}
# This SDK version no longer sends temperature itself; the API still takes it.
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
async def wire() -> AsyncIterator[WireServer]:
    async with anthropic_wire_server(WIRE_KEY, (WIRE_MODEL,)) as server:
        yield server


@pytest.fixture(scope="module")
async def stack(frontier_base_url: str, wire: WireServer, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[Stack]:  # fmt: skip
    tiers = [
        *frontier_tiers(frontier_base_url),
        TierSettings(name="claude", kind="anthropic", rank=2, model=WIRE_MODEL, base_url=wire.base_url,
                     api_key=WIRE_KEY, max_retries=0),
        TierSettings(name="claude-dead", kind="anthropic", rank=3, model="nowhere",
                     base_url=f"http://127.0.0.1:{free_port()}", max_retries=0),
    ]  # fmt: skip
    async with running_stack(tmp_path_factory.mktemp("http-messages"), frontier_base_url=frontier_base_url,
                             tiers=tiers) as s:  # fmt: skip
        yield s


def client(stack: Stack, key: str = "") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=stack.http_base_url, api_key=key or stack.api_key, max_retries=0)


def nano(usd: str) -> int:
    return int(Decimal(usd) * 1_000_000_000)


async def charge_event(stack: Stack, request_id: str) -> ledger_pb2.UsageEvent:
    events = await stack.ledger.admin.list_events(kind="charge")
    found = [e for e in events if e.request_id.split(":")[0] == request_id]
    assert len(found) == 1, f"expected one charge for {request_id}, got {len(found)}"
    return found[0]


async def raw_post(stack: Stack, body: Any, *, path: str = "/v1/messages", **headers: str) -> httpx.Response:
    hdrs = {"x-api-key": stack.api_key, "anthropic-version": "2023-06-01", **headers}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=60) as http:
        return await http.post(path, content=content, headers={k: v for k, v in hdrs.items() if v})


async def test_sync_client_message_is_billed_as_reported(stack: Stack) -> None:
    def call() -> Any:
        with anthropic.Anthropic(base_url=stack.http_base_url, api_key=stack.api_key, max_retries=0) as c:
            return c.messages.with_raw_response.create(model="frontier-mini", max_tokens=4, extra_body=GREEDY,
                                                       messages=HELLO, extra_headers=NO_CACHE)  # fmt: skip

    raw = await asyncio.to_thread(call)
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant" and msg.content[0].text
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert raw.headers["x-rationer-tier"] == "frontier-mini" and raw.headers["x-rationer-cache"] == "miss"
    rid = raw.headers["x-request-id"]
    assert raw.headers["request-id"] == rid and msg.id == f"msg_{rid}"
    charge = await charge_event(stack, rid)
    assert (charge.prompt_tokens, charge.completion_tokens) == (msg.usage.input_tokens, msg.usage.output_tokens)
    assert charge.cost.nano_usd == nano(raw.headers["x-rationer-cost-usd"]) > 0


async def test_async_client_and_bearer_auth(stack: Stack) -> None:
    async with client(stack) as c:
        msg = await c.messages.create(model="frontier-mini", max_tokens=4, extra_body=GREEDY, messages=HELLO,
                                      system="Be brief.", extra_headers=NO_CACHE)  # fmt: skip
    assert msg.content[0].type == "text" and msg.usage.output_tokens <= 4
    bearer = await raw_post(stack, {"model": "frontier-mini", "max_tokens": 4, "messages": HELLO},
                            **{"x-api-key": "", "Authorization": f"Bearer {stack.api_key}"})  # fmt: skip
    assert bearer.status_code == 200 and bearer.json()["type"] == "message"


async def test_stream_has_the_event_sequence_and_exact_usage(stack: Stack) -> None:
    c = client(stack)
    async with c, c.messages.stream(model="frontier-mini", max_tokens=8, extra_body=GREEDY, messages=HELLO,
                                    extra_headers=NO_CACHE) as s:  # fmt: skip
        text = "".join([t async for t in s.text_stream])
        final = await s.get_final_message()
        rid = s.response.headers["x-request-id"]
    assert text and final.content[0].text == text
    charge = await charge_event(stack, rid)
    assert (charge.prompt_tokens, charge.completion_tokens) == (final.usage.input_tokens, final.usage.output_tokens)
    body = {"model": "claude", "max_tokens": 20, "stream": True, "messages": HELLO}
    resp = await raw_post(stack, body, **NO_CACHE)
    names = [line[7:] for line in resp.text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}


async def test_count_tokens_uses_the_named_tier(stack: Stack) -> None:
    async with client(stack) as c:
        counted = await c.messages.count_tokens(model="frontier-mini", messages=HELLO)
        more = await c.messages.count_tokens(model="frontier-mini", messages=HELLO, system="A long system prompt.")
    assert 0 < counted.input_tokens < more.input_tokens


async def test_errors_raise_the_sdks_classes(stack: Stack) -> None:
    other = await stack.new_key(org="msg-allow-org", allowed_tiers=["frontier-mini"])
    async with client(stack, "rk_not_a_real_key") as bad:
        with pytest.raises(anthropic.AuthenticationError):
            await bad.messages.create(model="auto", max_tokens=4, messages=HELLO)
    async with client(stack, other.secret) as c:
        with pytest.raises(anthropic.PermissionDeniedError):
            await c.messages.create(model="frontier", max_tokens=4, messages=HELLO)
        with pytest.raises(anthropic.NotFoundError):
            await c.messages.create(model="no-such-model", max_tokens=4, messages=HELLO)
        with pytest.raises(anthropic.BadRequestError, match="image blocks"):
            image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
            await c.messages.create(model="auto", max_tokens=4, messages=[{"role": "user", "content": [image]}])
    # Only the dead tier: no fallback is left, so capacity is short (529).
    dead_only = await stack.new_key(org="msg-dead-org", allowed_tiers=["claude-dead"])
    async with client(stack, dead_only.secret) as c:
        with pytest.raises(anthropic.APIStatusError) as over:
            await c.messages.create(model="claude-dead", max_tokens=4, messages=HELLO, extra_headers=NO_CACHE)
    assert over.value.status_code == 529 and over.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


async def test_http_layer_errors_are_anthropic_json(stack: Stack) -> None:
    no_version = await raw_post(stack, {"model": "auto", "max_tokens": 4, "messages": HELLO},
                                **{"anthropic-version": ""})  # fmt: skip
    no_max = await raw_post(stack, {"model": "auto", "messages": HELLO})
    huge = await raw_post(stack, b"{" + b" " * (stack.http.door.settings.max_body_bytes + 10) + b"}")
    for resp, status, kind, text in ((no_version, 400, "invalid_request_error", "anthropic-version"),
                                     (no_max, 400, "invalid_request_error", "max_tokens"),
                                     (huge, 413, "request_too_large", "")):  # fmt: skip
        assert resp.status_code == status
        body = resp.json()
        assert body["type"] == "error" and body["error"]["type"] == kind and text in body["error"]["message"]
        assert body["request_id"] == resp.headers["request-id"]


async def test_rate_limit_is_429_with_retry_after(stack: Stack) -> None:
    key = await stack.new_key(org="msg-rate-org")
    await stack.ledger.admin.set_rate_limit("key", key.key_id, rpm=1)
    async with client(stack, key.secret) as c:
        await c.messages.create(model="frontier-mini", max_tokens=2, messages=HELLO, extra_headers=NO_CACHE)
        with pytest.raises(anthropic.RateLimitError) as limited:
            await c.messages.create(model="frontier-mini", max_tokens=2, messages=HELLO, extra_headers=NO_CACHE)
    assert int(limited.value.response.headers["retry-after"]) >= 1
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


async def test_error_after_the_first_token_is_an_error_event(stack: Stack, wire: WireServer) -> None:
    wire.faults[:] = [Fault(midstream="overloaded_error", after=2)]
    async with client(stack) as c:
        with pytest.raises(anthropic.APIStatusError) as failed:
            async with c.messages.stream(model="claude", max_tokens=20, messages=HELLO,
                                         extra_headers=NO_CACHE) as s:  # fmt: skip
                async for _ in s.text_stream:
                    pass
    assert "overloaded_error" in str(failed.value)


async def _held(stack: Stack, user_id: str) -> tuple[int, int]:
    (budget,) = await stack.ledger.admin.list_budgets("user", user_id)
    return budget.held, budget.spent


async def test_disconnect_mid_stream_bills_what_was_delivered(stack: Stack) -> None:
    key = await stack.new_key(org="msg-disconnect-org", allowed_tiers=["frontier"])
    await stack.ledger.admin.set_budget("user", key.user_id, unit="usd", period="monthly", hard_limit=10**12)
    body = {"model": "frontier", "messages": [{"role": "user", "content": STORY}], "max_tokens": 400, "stream": True}
    headers = {"x-api-key": key.secret, "anthropic-version": "2023-06-01", "x-request-id": "msg-hangup-1", **NO_CACHE}
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=60) as http:
        resp = await http.send(http.build_request("POST", "/v1/messages", json=body, headers=headers), stream=True)
        assert resp.status_code == 200
        delivered = ""
        lines = resp.aiter_lines()  # keep a reference (see test_http_errors)
        async for line in lines:
            if line.startswith("data: ") and '"text_delta"' in line:
                delivered += json.loads(line[6:])["delta"]["text"]
                if len(delivered) >= 20:
                    break
        held_mid_stream, _ = await _held(stack, key.user_id)
        await resp.aclose()  # hang up mid-answer
    assert delivered and held_mid_stream > 0
    for _ in range(300):
        held, spent = await _held(stack, key.user_id)
        if held == 0:
            break
        await asyncio.sleep(0.05)
    charges = [e for e in await stack.ledger.admin.list_events(kind="charge") if e.key_id == key.key_id]
    assert held == 0 and len(charges) == 1, "one charge, and no hold left"
    (charge,) = charges
    assert spent == charge.cost.nano_usd > 0 and "finish=client_disconnected" in charge.detail
    assert len(delivered.encode()) <= charge.completion_tokens <= 400
