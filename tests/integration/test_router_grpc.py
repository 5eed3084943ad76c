"""The router's gRPC front door against real services on loopback: bad input,
auth, allow-lists, deadlines and revocation."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stack import Stack, running_stack

from rationer.api.common.v1 import common_pb2
from rationer.api.router.v1 import router_pb2, router_pb2_grpc


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory, frontier_base_url: str) -> AsyncIterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("router-grpc")
    async with running_stack(tmp, frontier_base_url=frontier_base_url) as s:
        yield s


def _req(text: str = "Say hi.", **params: object) -> router_pb2.CompleteRequest:
    return router_pb2.CompleteRequest(
        messages=[common_pb2.ChatMessage(role="user", content=text)],
        params=common_pb2.GenerationParams(max_tokens=int(params.pop("max_tokens", 4)), **params),  # type: ignore[arg-type]
        no_cache=True,
    )


def _md(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value.code()


async def test_bad_input_gets_precise_status_codes(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.router_address) as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        good = _md(stack.api_key)
        cases: list[tuple[object, grpc.StatusCode]] = [
            (stub.Complete(_req()), grpc.StatusCode.UNAUTHENTICATED),
            (stub.Complete(_req(), metadata=(("authorization", "Token abc"),)), grpc.StatusCode.UNAUTHENTICATED),
            (stub.Complete(_req(), metadata=_md("rk_not_a_real_key")), grpc.StatusCode.UNAUTHENTICATED),
            (stub.Complete(router_pb2.CompleteRequest(), metadata=good), grpc.StatusCode.INVALID_ARGUMENT),
            (stub.Complete(_req("x" * 70_000), metadata=good), grpc.StatusCode.INVALID_ARGUMENT),
            (stub.Complete(_req(max_tokens=100_000), metadata=good), grpc.StatusCode.INVALID_ARGUMENT),
            (stub.Complete(_req(temperature=-1.0), metadata=good), grpc.StatusCode.INVALID_ARGUMENT),
            (stub.Complete(_req("a\x00b"), metadata=good), grpc.StatusCode.INVALID_ARGUMENT),
            (stub.Complete(_req(), metadata=good, timeout=0.005), grpc.StatusCode.DEADLINE_EXCEEDED),
        ]
        for call, expected in cases:
            assert await _code(call) == expected
        unknown = router_pb2.CompleteRequest(messages=_req().messages, model="no-such-tier")
        assert await _code(stub.Complete(unknown, metadata=good)) == grpc.StatusCode.NOT_FOUND


async def test_messages_say_what_to_do(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.router_address) as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Complete(_req())
        assert "authorization: Bearer" in (info.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Complete(router_pb2.CompleteRequest(), metadata=_md(stack.api_key))
        assert "at least one message" in (info.value.details() or "")


async def test_allow_list_is_enforced_and_listed(stack: Stack) -> None:
    key = await stack.new_key(org="allowlist", allowed_tiers=["frontier-mini"])
    async with grpc.aio.insecure_channel(stack.router_address) as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        tiers = await stub.ListTiers(router_pb2.ListTiersRequest(), metadata=_md(key.secret))
        assert [t.name for t in tiers.tiers] == ["frontier-mini"]
        pinned = router_pb2.CompleteRequest(messages=_req().messages, model="frontier")
        assert await _code(stub.Complete(pinned, metadata=_md(key.secret))) == grpc.StatusCode.PERMISSION_DENIED
        # "auto" stays inside the allow-list even for a hard prompt.
        hard = _req("Prove the Riemann hypothesis step by step, then compute 17^23 mod 101.")
        resp = await stub.Complete(hard, metadata=_md(key.secret))
        assert resp.route.tier == "frontier-mini"


async def test_revoked_key_stops_working_within_the_auth_cache_bound(stack: Stack) -> None:
    key = await stack.new_key(org="revoke")
    async with grpc.aio.insecure_channel(stack.router_address) as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        ok = await stub.Complete(_req(), metadata=_md(key.secret))
        assert ok.route.tier
        await stack.ledger.admin.revoke_key(key.key_id)
        # auth_cache_ttl_s is 0.5 here; the documented default bound is 5 s.
        for _ in range(60):
            try:
                await stub.Complete(_req(), metadata=_md(key.secret))
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("revoked key still accepted after 6 s")


async def test_response_carries_routing_metadata_and_project_tag(stack: Stack) -> None:
    key = await stack.new_key(org="meta")
    md = (*_md(key.secret), ("x-rationer-project", "billing-bot"))
    async with grpc.aio.insecure_channel(stack.router_address) as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        resp = await stub.Complete(_req(max_tokens=5), metadata=md)
    r = resp.route
    assert r.request_id and r.tier and r.model and 0.0 <= r.complexity <= 1.0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    assert r.cost.nano_usd > 0 and r.savings.nano_usd >= 0
    events = [e for e in await stack.ledger.admin.list_events(kind="charge") if e.request_id == r.request_id]
    assert len(events) == 1 and events[0].project == "billing-bot"
    assert events[0].cost.nano_usd == r.cost.nano_usd


async def test_end_user_tag_is_bound_into_the_call_log_context(stack: Stack) -> None:
    import structlog

    from services.router.types import CompletionRequest, GenParams, Message

    req = CompletionRequest(messages=(Message("user", "Say hi."),), params=GenParams(max_tokens=4), user="u-42")
    with structlog.contextvars.bound_contextvars(request_id=None, principal=None, end_user=None):
        await stack.core.prepare(stack.api_key, req, request_id="tag-1")
        ctx = structlog.contextvars.get_contextvars()
        assert ctx["end_user"] == "u-42" and ctx["request_id"] == "tag-1" and ctx["principal"]


async def test_sync_sdk_client_and_cli_chat(stack: Stack) -> None:
    import asyncio

    from typer.testing import CliRunner

    from rationer import Client
    from rationer.cli.main import app

    def call() -> tuple[str, str, list[str]]:
        with Client(stack.router_address, stack.api_key) as c:
            answer = c.complete("Say hi.", max_tokens=4, no_cache=True)
            chunks = list(c.stream("Say hi.", max_tokens=4, no_cache=True))
            assert chunks[-1].route is not None and chunks[-1].route.tier
            return answer.text, answer.route.tier, c.tiers()

    text, tier, tiers = await asyncio.to_thread(call)
    assert text and tier in tiers
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["chat", "--address", stack.router_address, "--api-key", stack.api_key, "--max-tokens", "4", "--json", "Hi"],
    )
    assert result.exit_code == 0, result.output
    assert '"tier"' in result.output


async def test_cli_complete_reads_messages_from_a_file(stack: Stack, tmp_path: Path) -> None:
    import asyncio
    import json

    from typer.testing import CliRunner

    from rationer.cli.main import app

    path = tmp_path / "prompt.json"
    path.write_text(json.dumps([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]))
    args = ["complete", "--file", str(path), "--address", stack.router_address, "--api-key", stack.api_key,
            "--max-tokens", "4", "--json"]  # fmt: skip
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    # The in-process services' log lines share the captured stream; the
    # answer is the one JSON object in it.
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("{")]
    assert json.loads(line)["route"]["tier"]


async def test_a_reused_request_id_is_refused_not_served_free(stack: Stack) -> None:
    # The request id is the ledger's idempotency key. A second call with the
    # same id must not ride on the first call's hold and charge.
    key = await stack.new_key(org="reused-id")
    await stack.ledger.admin.set_budget("user", key.user_id, unit="usd", period="monthly", hard_limit=10**12)
    md = (*_md(key.secret), ("x-request-id", "fixed-id-1"))
    async with grpc.aio.insecure_channel(stack.router_address) as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        first = await stub.Complete(_req(), metadata=md)
        assert first.route.request_id == "fixed-id-1" and first.route.cost.nano_usd > 0
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Complete(_req("Say something else."), metadata=md)
            assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
            assert "already used by another call" in (info.value.details() or "")
    charges = [e for e in await stack.ledger.admin.list_events(kind="charge") if e.key_id == key.key_id]
    assert [e.request_id for e in charges] == ["fixed-id-1"]
    (budget,) = await stack.ledger.admin.list_budgets("user", key.user_id)
    assert (budget.held, budget.spent) == (0, first.route.cost.nano_usd)


async def test_a_caller_gone_while_the_hold_is_placed_leaves_no_hold(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.router.types import CompletionRequest, GenParams, Message

    key = await stack.new_key(org="gone-mid-authorize")
    await stack.ledger.admin.set_budget("user", key.user_id, unit="usd", period="monthly", hard_limit=10**12)
    real = stack.core.ledger.authorize
    reached, placed = asyncio.Event(), asyncio.Event()

    async def slow_authorize(**kw: Any) -> Any:
        reached.set()
        await asyncio.sleep(0.5)  # the ledger is slow today
        try:
            return await real(**kw)
        finally:
            placed.set()

    monkeypatch.setattr(stack.core.ledger, "authorize", slow_authorize)
    req = CompletionRequest(messages=(Message("user", "Say hi."),), params=GenParams(max_tokens=4), no_cache=True)
    call = asyncio.ensure_future(stack.core.complete(key.secret, req))
    await reached.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.wait_for(placed.wait(), 10)  # the hold now exists at the ledger
    held = -1
    for _ in range(100):
        (budget,) = await stack.ledger.admin.list_budgets("user", key.user_id)
        held = budget.held
        if held == 0:
            break
        await asyncio.sleep(0.05)
    # Released once placed, not kept until its TTL; nothing was charged.
    assert held == 0
    assert not [e for e in await stack.ledger.admin.list_events(kind="charge") if e.key_id == key.key_id]


async def test_the_deadline_bounds_the_steps_before_the_model(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rationer.errors import DeadlineExceeded
    from services.router.types import CompletionRequest, GenParams, Message

    async def hung_headroom(*args: Any, **kw: Any) -> float:
        await asyncio.sleep(30)  # a ledger that accepts the call and never answers
        return 1.0

    monkeypatch.setattr(stack.core.ledger, "headroom", hung_headroom)
    req = CompletionRequest(messages=(Message("user", "Say hi."),), params=GenParams(max_tokens=4), no_cache=True)
    loop = asyncio.get_running_loop()
    with pytest.raises(DeadlineExceeded, match="while looking up the cache and embedding"):
        await stack.core.complete(stack.api_key, req, deadline=loop.time() + 0.5)


async def test_the_allow_list_is_checked_before_the_cache(stack: Stack) -> None:
    from rationer.errors import PermissionDenied
    from services.router.types import CompletionRequest, GenParams, Message

    full = await stack.new_key(org="cache-allow")
    limited = (await stack.ledger.admin.create_key(user_id=full.user_id, allowed_tiers=["frontier-mini"])).secret
    req = CompletionRequest(messages=(Message("user", "Name a primary colour."),),
                            params=GenParams(max_tokens=4, temperature=0.0), model="frontier")  # fmt: skip
    await stack.core.complete(full.secret, req)
    for _ in range(100):  # the answer is stored off the response path
        _, route = await stack.core.complete(full.secret, req)
        if route.cache_hit:
            break
        await asyncio.sleep(0.05)
    assert route.cache_hit
    # Same tenant, same prompt, but this key may not use the frontier tier.
    with pytest.raises(PermissionDenied, match="not allowed"):
        await stack.core.complete(limited, req)


# ---- x-request-id: one rule for both doors (services/router/request_ids.py) ----

# gRPC metadata values are printable ASCII; generate from all of it.
_PRINTABLE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80)


async def test_the_routers_own_fallback_id_form_is_refused(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.router_address) as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        for rid in ("a#local-large", "x" * 65, "has space"):
            md = (*_md(stack.api_key), ("x-request-id", rid))
            tiers = stub.ListTiers(router_pb2.ListTiersRequest(), metadata=md)
            for call in (stub.Complete(_req(), metadata=md), tiers):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "x-request-id" in (info.value.details() or "")
            stream = stub.CompleteStream(_req(), metadata=md)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in stream:
                    pass
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Complete(_req(), metadata=(*_md(stack.api_key), ("x-request-id", "a#local-large")))
        assert "reserves" in (info.value.details() or "")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rid=_PRINTABLE)
async def test_generated_request_ids_are_accepted_exactly_when_they_keep_the_rule(stack: Stack, rid: str) -> None:
    valid = re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", rid) is not None
    async with grpc.aio.insecure_channel(stack.router_address) as ch:
        call = router_pb2_grpc.RouterServiceStub(ch).ListTiers(
            router_pb2.ListTiersRequest(), metadata=(*_md(stack.api_key), ("x-request-id", rid))
        )
        if valid:
            assert (await call).tiers
        else:
            assert await _code(call) == grpc.StatusCode.INVALID_ARGUMENT
