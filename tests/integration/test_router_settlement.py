"""Money is not lost when the ledger goes away during a call.

A real ledger (SQLite) is stopped while the model is answering and started
again, on the same port and database file, seconds later. The router answers
the caller, marks the settlement pending, and the charge lands once the
ledger is back; the hold does not stay held. If the router itself stops
during the outage, its settlement journal carries the charge to its next
start. The frontier here is a slow
local OpenAI-compatible endpoint (a paid API cannot run in tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from rationer.errors import Unavailable
from rationer.platform.net import free_port
from rationer.platform.server import start
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.calls import CommitCall
from services.ledger.models import UsageEvent
from services.ledger.server import create_server as create_ledger
from services.ledger.wiring import build_deps, close_deps
from services.router.journal import SettlementJournal
from services.router.settings import RouterSettings
from services.router.types import CompletionRequest, GenParams, Message
from services.router.wiring import RouterDeps
from services.router.wiring import build_deps as build_router_deps
from testsupport.ledger import ADMIN_TOKEN, make_key, settings_for
from testsupport.platform import SERVICE_TOKEN

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


async def _ledger(tmp_path: Path, port: int, **overrides: Any) -> tuple[object, object]:
    deps = await build_deps(settings_for("sqlite", tmp_path, **overrides), sweeper=False)
    server, _ = create_ledger(f"127.0.0.1:{port}", deps, service_token=SERVICE_TOKEN)
    await start(server)
    return server, deps


def _router_settings(ledger: str, upstream_port: int, journal: Path) -> RouterSettings:
    return RouterSettings.model_validate({
        "ledger_address": ledger, "cache_address": "", "worker_addresses": [],
        "tiers": [{"name": "frontier", "kind": "frontier", "rank": 0, "model": "slow",
                   "base_url": f"http://127.0.0.1:{upstream_port}/v1", "max_retries": 0}],
        "settlement_journal": str(journal), "service_token": SERVICE_TOKEN,
    })  # fmt: skip


async def _charges(target: str, request_id: str) -> list[UsageEvent]:
    """The charge events for ``request_id``, waiting up to 20 s for the first."""
    events: list[UsageEvent] = []
    async with LedgerAdminClient(target, ADMIN_TOKEN) as admin:
        for _ in range(80):
            # gRPC shares one connection backoff per address across
            # channels, so the first calls after the restart may fail fast.
            with contextlib.suppress(Unavailable):
                events = [e for e in await admin.list_events(kind="charge") if e.request_id == request_id]
            if events:
                break
            await asyncio.sleep(0.25)
        assert all(b.held == 0 for b in await admin.list_budgets())
    return events


async def _answer_while_the_ledger_goes_down(
    router_deps: RouterDeps, secret: str, request_id: str, ledger: tuple[object, object]
) -> float:
    req = CompletionRequest(messages=(Message("user", "Say ok."),), params=GenParams(max_tokens=4))
    call = asyncio.ensure_future(router_deps.core.complete(secret, req, request_id=request_id))
    await asyncio.sleep(0.7)  # the hold is placed; the model is still answering
    server, deps = ledger
    await server.stop(None)  # type: ignore[attr-defined]
    await close_deps(deps)  # type: ignore[arg-type]
    down_since = time.monotonic()
    text, route = await call
    assert text == "ok" and route.settlement_pending and route.cost_nano_usd == 0
    return down_since


async def test_commit_survives_a_ledger_restart_during_the_call(tmp_path: Path) -> None:
    ledger_port, upstream_port = free_port(), free_port()
    upstream = await _slow_upstream(upstream_port)
    server, deps = await _ledger(tmp_path, ledger_port)
    target = f"127.0.0.1:{ledger_port}"
    async with LedgerAdminClient(target, ADMIN_TOKEN) as admin:
        key = await make_key(admin, org="outage")
    router_deps = await build_router_deps(_router_settings(target, upstream_port, tmp_path / "journal.sqlite3"))
    try:
        down_since = await _answer_while_the_ledger_goes_down(router_deps, key.secret, "outage-1", (server, deps))
        await asyncio.sleep(max(0.0, 3.5 - (time.monotonic() - down_since)))
        server, deps = await _ledger(tmp_path, ledger_port)
        events = await _charges(target, "outage-1")
        assert len(events) == 1 and events[0].cost.nano_usd > 0
        assert (events[0].prompt_tokens, events[0].completion_tokens) == (20, 2)
    finally:
        await router_deps.close()
        await server.stop(None)  # type: ignore[attr-defined]
        await close_deps(deps)  # type: ignore[arg-type]
        await upstream.cleanup()


async def test_a_restarted_router_replays_its_journal_and_bills_late(tmp_path: Path) -> None:
    # The router stops while the ledger is down, so the commit exists only in
    # its journal; by the time both are back the hold has expired. The new
    # router process replays the journal and the ledger bills it, once.
    ledger_port, upstream_port = free_port(), free_port()
    journal = tmp_path / "journal.sqlite3"
    upstream = await _slow_upstream(upstream_port)
    server, deps = await _ledger(tmp_path, ledger_port, reservation_ttl_s=1.0)
    target = f"127.0.0.1:{ledger_port}"
    async with LedgerAdminClient(target, ADMIN_TOKEN) as admin:
        key = await make_key(admin, org="crash")
    first = await build_router_deps(_router_settings(target, upstream_port, journal))
    try:
        await _answer_while_the_ledger_goes_down(first, key.secret, "crash-1", (server, deps))
    finally:
        await first.core.drain(timeout_s=0.1)  # gives up on the outage: the commit stays journaled
        await first.close()
    (entry,) = SettlementJournal(journal).pending()
    assert isinstance(entry.call, CommitCall) and entry.call.completion_tokens == 2
    server, deps = await _ledger(tmp_path, ledger_port, reservation_ttl_s=1.0)
    second = await build_router_deps(_router_settings(target, upstream_port, journal))
    try:
        events = await _charges(target, "crash-1")
        assert len(events) == 1 and events[0].cost.nano_usd > 0
        assert events[0].detail.startswith("late: hold expired at")
        for _ in range(40):
            if not len(second.core.journal):
                break
            await asyncio.sleep(0.05)
        assert not len(second.core.journal)
    finally:
        await second.close()
        await server.stop(None)  # type: ignore[attr-defined]
        await close_deps(deps)  # type: ignore[arg-type]
        await upstream.cleanup()
