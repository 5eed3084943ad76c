"""A frontier tier that dies mid-answer, seen through the OpenAI-compatible front door.

The dying tier is a small local OpenAI-compatible endpoint that streams two
chunks and then drops the connection (or closes it cleanly without finishing):
a fault a real provider cannot be made to produce on demand. The tier above
it is the real llama_cpp.server. A plain OpenAI client must get an error event,
never a spliced answer; a client that sends ``allow_restart`` gets the
``restart`` chunk and a whole answer from the next tier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from logcheck import sensitive
from stack import Stack, running_stack

from rationer.errors import DeadlineExceeded, Unavailable
from rationer.platform.net import free_port
from services.router.backends.frontier import FrontierClient, FrontierConfig
from services.router.settings import TierSettings
from services.router.types import GenParams, Message

STORY = [{"role": "user", "content": "Tell me a short story about a lighthouse."}]
sensitive(STORY[0]["content"])  # never in a log (tests/logcheck.py)


class DyingUpstream:
    """Streams two content chunks, then breaks the connection (``abrupt``) or ends it early."""

    def __init__(self) -> None:
        self.calls = 0
        self.runner: web.AppRunner | None = None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        if request.match_info["mode"] == "nousage":  # a whole answer, but no usage block
            return web.json_response({"id": "x", "object": "chat.completion", "model": "nousage", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}]})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if request.match_info["mode"] == "usage":  # OpenAI's include_usage shape
            chunks = [
                {"choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {"choices": [], "usage": {"prompt_tokens": 17, "completion_tokens": 2, "total_tokens": 19}},
            ]
            for c in chunks:
                await resp.write(f"data: {json.dumps({'id': 'x', 'model': 'usage', **c})}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
            return resp
        if request.match_info["mode"] == "slow":  # one token every 0.3 s, 20 in all
            chunk = {"id": "x", "object": "chat.completion.chunk", "model": "slow",
                     "choices": [{"index": 0, "delta": {"content": "tick "}, "finish_reason": None}]}  # fmt: skip
            with contextlib.suppress(ConnectionResetError):  # the client gives up first
                for _ in range(20):
                    await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    await asyncio.sleep(0.3)
                await resp.write(b"data: [DONE]\n\n")
            return resp
        for word in ("Once ", "upon "):
            chunk = {"id": "x", "object": "chat.completion.chunk", "model": "dying",
                     "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}  # fmt: skip
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await asyncio.sleep(0.05)
        if request.match_info["mode"] == "abrupt":
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write_eof()  # clean close, but no finish_reason and no [DONE]
        return resp

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/{mode}/v1/chat/completions", self.chat)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()


@pytest.fixture(scope="module")
async def dying() -> AsyncIterator[tuple[DyingUpstream, str]]:
    upstream, port = DyingUpstream(), free_port()
    await upstream.start(port)
    try:
        yield upstream, f"http://127.0.0.1:{port}"
    finally:
        assert upstream.runner is not None
        await upstream.runner.cleanup()


@pytest.fixture(scope="module")
async def stack(
    frontier_base_url: str, dying: tuple[DyingUpstream, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    tiers = [
        TierSettings(name="frontier-mini", kind="frontier", rank=0, model="dying",
                     base_url=f"{dying[1]}/abrupt/v1", max_retries=2),
        TierSettings(name="frontier", kind="frontier", rank=1, model="smollm2-frontier",
                     base_url=frontier_base_url, max_retries=0),
    ]  # fmt: skip
    # fallback_for: these requests name frontier-mini and are about another tier taking over
    # mid-stream; a named tier is replaced only for keys whose policy allows it.
    async with running_stack(
        tmp_path_factory.mktemp("midstream"), frontier_base_url=frontier_base_url, tiers=tiers, cache=False,
        fallback_for=["*"],
    ) as s:
        yield s


async def _events(stack: Stack, secret: str, **extra: Any) -> list[dict[str, Any]]:
    body = {"model": "frontier-mini", "messages": STORY, "max_tokens": 24, "stream": True, **extra}
    out = []
    headers = {"Authorization": f"Bearer {secret}"}
    async with (
        httpx.AsyncClient(base_url=stack.http_base_url, timeout=120) as http,
        http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as resp,
    ):
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line[6:]))
    return out


async def _money(stack: Stack, user_id: str) -> tuple[int, int]:
    for _ in range(100):  # a release may still be in flight when the stream ends
        (budget,) = await stack.ledger.admin.list_budgets("user", user_id)
        if budget.held == 0:
            break
        await asyncio.sleep(0.05)
    return budget.held, budget.spent


def _text(events: list[dict[str, Any]]) -> str:
    return "".join((c["delta"].get("content") or "") for e in events for c in e.get("choices", []))


async def test_plain_client_gets_an_error_not_a_spliced_answer(stack: Stack) -> None:
    key = await stack.new_key(org="plain-client")
    await stack.ledger.admin.set_budget("user", key.user_id, unit="usd", period="monthly", hard_limit=10**12)
    events = await _events(stack, key.secret)
    assert _text(events) == "Once upon "
    assert not any((e.get("rationer") or {}).get("restart") for e in events)
    error = events[-1]["error"]
    assert "failed mid-answer" in error["message"] and "allow_restart" in error["message"]
    # Nothing was billed for the broken attempt, and nothing stays held.
    assert await _money(stack, key.user_id) == (0, 0)


async def test_allow_restart_starts_over_on_the_next_tier(stack: Stack) -> None:
    key = await stack.new_key(org="restart-client")
    await stack.ledger.admin.set_budget("user", key.user_id, unit="usd", period="monthly", hard_limit=10**12)
    events = await _events(stack, key.secret, allow_restart=True)
    restart = next(i for i, e in enumerate(events) if (e.get("rationer") or {}).get("restart"))
    assert _text(events[:restart]) == "Once upon "
    assert _text(events[restart:]).strip()
    final = next(e for e in events if e.get("choices") and e["choices"][0].get("finish_reason"))
    assert final["rationer"]["tier"] == "frontier"
    held, spent = await _money(stack, key.user_id)
    assert held == 0 and spent > 0


@pytest.mark.parametrize("mode", ["abrupt", "clean"])
async def test_frontier_client_never_retries_a_stream_that_sent_text(
    dying: tuple[DyingUpstream, str], mode: str
) -> None:
    upstream, base = dying
    client = FrontierClient(FrontierConfig(base_url=f"{base}/{mode}/v1", model="dying", max_retries=2))
    before = upstream.calls
    texts: list[str] = []
    try:
        with pytest.raises(Unavailable, match=r"mid-answer|before the answer finished"):
            async for delta in client.stream([Message("user", "hi")], GenParams(max_tokens=8)):
                texts.append(delta.text)
    finally:
        await client.aclose()
    # One upstream call and one copy of the text: a retry would have
    # streamed "Once upon " again onto the first.
    assert (upstream.calls - before, "".join(texts)) == (1, "Once upon ")


async def test_a_trickling_stream_stops_at_the_deadline(dying: tuple[DyingUpstream, str]) -> None:
    # httpx's timeout is per read; a token every 0.3 s would never trip it.
    client = FrontierClient(FrontierConfig(base_url=f"{dying[1]}/slow/v1", model="slow", max_retries=0))
    texts: list[str] = []
    try:
        with pytest.raises(DeadlineExceeded, match="past the caller's deadline"):
            async for delta in client.stream([Message("user", "hi")], GenParams(max_tokens=8),
                                             deadline=time.monotonic() + 1.0):  # fmt: skip
                texts.append(delta.text)
    finally:
        await client.aclose()
    assert 0 < len(texts) < 20


async def test_a_black_holed_endpoint_is_unavailable_not_the_callers_deadline() -> None:
    # A listener whose accept queue is full drops SYNs: connect hangs, as on a
    # firewalled host. The connect timeout must fail the tier over (UNAVAILABLE)
    # long before the caller's deadline.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        # With a backlog of 0 Linux queues one connection; the next SYN is dropped.
        fillers = [socket.create_connection(("127.0.0.1", port), timeout=5)]
        client = FrontierClient(FrontierConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m",
                                               max_retries=0, connect_timeout_s=0.3))  # fmt: skip
        try:
            with pytest.raises(Unavailable, match="unreachable"):
                await client.complete([Message("user", "hi")], GenParams(max_tokens=4),
                                      deadline=time.monotonic() + 30)  # fmt: skip
        finally:
            await client.aclose()
            for f in fillers:
                f.close()


async def test_an_answer_without_usage_is_kept_and_billed_at_the_hold(dying: tuple[DyingUpstream, str]) -> None:
    # Failing over would pay the provider twice and charge the caller $0.
    upstream, base = dying
    client = FrontierClient(FrontierConfig(base_url=f"{base}/nousage/v1", model="nousage", max_retries=2))
    before = upstream.calls
    try:
        out = await client.complete([Message("user", "hi")], GenParams(max_tokens=8))
    finally:
        await client.aclose()
    assert (out.text, out.usage_exact, upstream.calls - before) == ("fine", False, 1)


async def test_a_stream_with_include_usage_is_billed_exactly(dying: tuple[DyingUpstream, str]) -> None:
    # llama_cpp.server ignores include_usage, so this path needs its own upstream.
    client = FrontierClient(FrontierConfig(base_url=f"{dying[1]}/usage/v1", model="usage"))
    try:
        deltas = [d async for d in client.stream([Message("user", "hi")], GenParams(max_tokens=8))]
    finally:
        await client.aclose()
    final = deltas[-1]
    assert "".join(d.text for d in deltas) == "Hello"
    assert (final.final, final.usage_exact, final.prompt_tokens, final.completion_tokens) == (True, True, 17, 2)
    assert final.finish_reason == "stop"
