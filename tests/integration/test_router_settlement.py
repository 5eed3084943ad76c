"""Money is not lost when the ledger goes away during a call.

A real ledger (SQLite) is stopped while the model is answering and started
again, on the same port and database file, seconds later. The router answers
the caller, marks the settlement pending, and the charge lands once the
ledger is back; the hold does not stay held. The frontier here is a slow
local OpenAI-compatible endpoint (a paid API cannot run in tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from aiohttp import web

from rationer.errors import Unavailable
from rationer.platform.net import free_port
from rationer.platform.server import start
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.main import close_deps, open_deps
from services.ledger.server import create_server as create_ledger
from services.ledger.testing import ADMIN_TOKEN, make_key, settings_for
from services.router.main import assemble
from services.router.model_types import GenParams, Message
from services.router.requests import CompletionRequest
from services.router.settings import RouterSettings

ANSWER_DELAY_S = 2.0


async def _slow_upstream(port: int) -> web.AppRunner:
    async def chat(request: web.Request) -> web.Response:
        await asyncio.sleep(ANSWER_DELAY_S)
        return web.json_response({
            "id": "x", "object": "chat.completion", "model": "slow",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22},
        })  # fmt: skip

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _ledger(tmp_path: Path, port: int) -> tuple[object, object]:
    deps = await open_deps(settings_for("sqlite", tmp_path), sweeper=False)
    server, _ = create_ledger(f"127.0.0.1:{port}", deps)
    await start(server)
    return server, deps


async def test_commit_survives_a_ledger_restart_during_the_call(tmp_path: Path) -> None:
    ledger_port, upstream_port = free_port(), free_port()
    upstream = await _slow_upstream(upstream_port)
    server, deps = await _ledger(tmp_path, ledger_port)
    target = f"127.0.0.1:{ledger_port}"
    async with LedgerAdminClient(target, ADMIN_TOKEN) as admin:
        key = await make_key(admin, org="outage")
    settings = RouterSettings.model_validate({
        "ledger_address": target, "cache_address": "", "worker_addresses": [],
        "tiers": [{"name": "frontier", "kind": "frontier", "rank": 0, "model": "slow",
                   "base_url": f"http://127.0.0.1:{upstream_port}/v1", "max_retries": 0}],
    })  # fmt: skip
    assembled = await assemble(settings)
    try:
        req = CompletionRequest(messages=(Message("user", "Say ok."),), params=GenParams(max_tokens=4))
        call = asyncio.ensure_future(assembled.core.complete(key.secret, req, request_id="outage-1"))
        await asyncio.sleep(0.7)  # the hold is placed; the model is still answering
        await server.stop(None)  # type: ignore[attr-defined]
        await close_deps(deps)  # type: ignore[arg-type]
        down_since = time.monotonic()
        text, route = await call
        assert text == "ok" and route.settlement_pending and route.cost_nano_usd == 0
        await asyncio.sleep(max(0.0, 3.5 - (time.monotonic() - down_since)))
        server, deps = await _ledger(tmp_path, ledger_port)
        async with LedgerAdminClient(target, ADMIN_TOKEN) as admin:
            events = []
            for _ in range(80):
                # gRPC shares one connection backoff per address across
                # channels, so the first calls after the restart may fail fast.
                with contextlib.suppress(Unavailable):
                    events = [e for e in await admin.list_events(kind="charge") if e.request_id == "outage-1"]
                if events:
                    break
                await asyncio.sleep(0.25)
            assert len(events) == 1 and events[0].cost.nano_usd > 0
            assert (events[0].prompt_tokens, events[0].completion_tokens) == (20, 2)
            budgets = await admin.list_budgets()
            assert all(b.held == 0 for b in budgets)
    finally:
        await assembled.close()
        await server.stop(None)  # type: ignore[attr-defined]
        await close_deps(deps)  # type: ignore[arg-type]
        await upstream.cleanup()
