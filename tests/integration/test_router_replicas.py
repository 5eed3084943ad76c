"""A router replica that dies for good strands no money (docs/deploy.md, "Router replicas").

Real router processes (the router's own ``build_deps`` in a child Python,
killed with SIGKILL: no drain, no shutdown), a real ledger gRPC server on
SQLite, and a local OpenAI-compatible upstream:

- router A answers with ``answer_before_commit`` and its ledger adapter never
  sends the commits, so they exist only in A's journal; A is killed; then
  ``rationer router drain-journal`` (a real CLI process) or router B's
  adoption on start settles them. The ledger's charges equal the answers'
  costs to the nano-dollar, and draining a stale copy of the same journal
  bills nothing twice;
- a router killed mid-stream leaves its hold, which the ledger's sweeper
  expires after the (short) TTL: nothing is billed and the headroom returns.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from services.ledger.admin_client import LedgerAdminClient
from services.router.journal import SettlementJournal
from services.router.settings import RouterSettings
from services.router.wiring import build_deps as build_router_deps
from testsupport.ledger import RunningLedger, make_key, running_ledger, settings_for
from testsupport.ledger import TestKey as Key
from testsupport.platform import SERVICE_TOKEN

ANSWERS = 3

# Router A. "commit": answers ANSWERS calls, its commits never sent; "stream":
# starts one stream and stops after the first text. Prints one "@<JSON>" line each
# (structlog, not configured in this child, prints its own lines to stdout).
ROUTER = """
import asyncio, json, sys
from services.router import adapters
from services.router.settings import RouterSettings
from services.router.types import CompletionRequest, GenParams, Message
from services.router.wiring import build_deps

async def never(self, call):
    await asyncio.Event().wait()

async def main(mode, raw, secret, n):
    if mode == "commit":
        adapters.GrpcLedger.commit = never
    deps = await build_deps(RouterSettings.model_validate(json.loads(raw)))
    streams = []
    for i in range(int(n)):
        req = CompletionRequest(messages=(Message("user", f"Say ok {i}."),), params=GenParams(max_tokens=4))
        if mode == "commit":
            text, route = await deps.core.complete(secret, req, request_id=f"replica-a-{i}")
            print("@" + json.dumps({"cost": route.cost_nano_usd, "pending": route.settlement_pending}), flush=True)
        else:
            # Kept open (closing it would commit what was generated): still streaming when killed.
            streams.append(deps.core.stream(secret, req, request_id=f"stream-a-{i}"))
            event = await anext(streams[-1])
            print("@" + json.dumps({"event": type(event).__name__}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


async def _chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not body.get("stream"):
        return web.json_response({
            "id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22},
        })  # fmt: skip
    # A stream that sends one token and then never finishes: the router dies mid-stream.
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    chunk = {"id": "x", "object": "chat.completion.chunk", "model": "m",
             "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}  # fmt: skip
    await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await asyncio.sleep(3600)
    return resp


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _chat)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    await runner.cleanup()


def _settings(ledger: str, upstream: str, journal: Path, **extra: Any) -> RouterSettings:
    return RouterSettings.model_validate({
        "ledger_address": ledger, "cache_address": "", "worker_addresses": [],
        "tiers": [{"name": "frontier", "kind": "frontier", "rank": 0, "model": "m", "base_url": upstream,
                   "max_retries": 0}],
        "settlement_journal": str(journal), "service_token": SERVICE_TOKEN, "answer_before_commit": True,
        **extra,
    })  # fmt: skip


async def _router_a(mode: str, settings: RouterSettings, secret: str, n: int) -> tuple[Any, list[dict[str, Any]]]:
    """Router A as a child process, once it has printed ``n`` lines (it keeps running)."""
    raw = {**json.loads(settings.model_dump_json()), "service_token": SERVICE_TOKEN}  # the dump masks it
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ROUTER, mode, json.dumps(raw), secret, str(n), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    lines: list[dict[str, Any]] = []
    while len(lines) < n:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert line, f"router A exited early (rc={await proc.wait()})"
        if line.startswith(b"@"):
            lines.append(json.loads(line[1:]))
    return proc, lines


async def _kill(proc: Any) -> None:
    proc.send_signal(signal.SIGKILL)  # a crash: nothing is drained or flushed
    await proc.wait()


async def _charged(admin: LedgerAdminClient) -> tuple[int, int]:
    """(number of charges, their total cost in nano-USD)."""
    events = list(await admin.list_events(kind="charge"))
    return len(events), sum(e.cost.nano_usd for e in events)


async def _drain_cli(journal: Path, config: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATIONER_")}
    env["RATIONER_SERVICE_TOKEN"] = SERVICE_TOKEN
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rationer.cli.main", "router", "drain-journal", str(journal), "--config",
        str(config), "--wait-s", "5", "--json", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[tuple[RunningLedger, Key]]:
    # The sweeper on, every 0.2 s, holds living 1 s: an abandoned hold goes quickly.
    settings = settings_for("sqlite", tmp_path, reservation_ttl_s=1.0, sweep_interval_s=0.2)
    async with running_ledger(settings, sweeper=True) as led:
        key = await make_key(led.admin, org="replicas")
        yield led, key


def _config(tmp_path: Path, ledger: str) -> Path:
    config = tmp_path / "router.toml"
    config.write_text(f"[router]\nledger_address = '{ledger}'\n[router.logging]\nformat = 'json'\n")
    return config


async def test_a_second_router_on_a_held_journal_refuses_to_start(tmp_path: Path) -> None:
    journal = tmp_path / "router-settlements.r1.sqlite3"
    held = SettlementJournal(journal)  # a live router's, here this test process
    config = tmp_path / "router.toml"
    config.write_text(f"[router]\nsettlement_journal = '{tmp_path / 'router-settlements.sqlite3'}'\n"
                      "replica_id = 'r1'\nlisten = '127.0.0.1:0'\nworker_addresses = []\n")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATIONER_")}
    env["RATIONER_SERVICE_TOKEN"] = SERVICE_TOKEN
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rationer.cli.main", "serve", "router", "--config", str(config), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        held.close()
    assert proc.returncode == 2
    line = err.decode().strip().splitlines()[-1]
    assert line.startswith("error (FAILED_PRECONDITION): the settlement journal") and f"pid {os.getpid()}" in line
    assert "replica_id" in line


async def test_drain_journal_settles_a_killed_replicas_commits_exactly_once(
    tmp_path: Path, upstream: str, ledger: tuple[RunningLedger, Key]
) -> None:
    led, key = ledger
    settings = _settings(led.target, upstream, tmp_path / "j" / "router-settlements.sqlite3", replica_id="a")
    journal = settings.journal_path
    assert journal is not None and journal.name == "router-settlements.a.sqlite3"
    config = _config(tmp_path, led.target)
    proc, answers = await _router_a("commit", settings, key.secret, ANSWERS)
    try:
        assert all(a["cost"] > 0 and not a["pending"] for a in answers)  # answered, commits journaled only
        rc, _, err = await _drain_cli(journal, config)  # A is alive: its journal is not ours to drain
        assert rc == 2 and "FAILED_PRECONDITION" in err and "in use by another live router" in err
    finally:
        await _kill(proc)
    assert await _charged(led.admin) == (0, 0)
    stale = tmp_path / "stale"
    shutil.copytree(journal.parent, stale)  # a copy taken before the drain, drained again below

    rc, out, err = await _drain_cli(journal, config)
    assert rc == 0, err
    report = json.loads(out)
    assert (report["found"], report["landed"], report["left"], report["removed"]) == (ANSWERS, ANSWERS, 0, True)
    assert not journal.exists()
    assert await _charged(led.admin) == (ANSWERS, sum(a["cost"] for a in answers))  # to the nano-dollar

    rc, out, err = await _drain_cli(stale / journal.name, config)  # every entry again: the ledger dedups
    assert rc == 0 and json.loads(out)["landed"] == ANSWERS, err
    assert await _charged(led.admin) == (ANSWERS, sum(a["cost"] for a in answers))
    assert all(b.held == 0 for b in await led.admin.list_budgets())


async def test_another_replica_adopts_a_killed_replicas_journal_on_start(
    tmp_path: Path, upstream: str, ledger: tuple[RunningLedger, Key]
) -> None:
    led, key = ledger
    base = tmp_path / "shared" / "router-settlements.sqlite3"
    settings_a = _settings(led.target, upstream, base, replica_id="a")
    proc, answers = await _router_a("commit", settings_a, key.secret, ANSWERS)
    await _kill(proc)
    assert await _charged(led.admin) == (0, 0)

    b = await build_router_deps(_settings(led.target, upstream, base, replica_id="b", adopt_orphaned_journals=True))
    try:
        assert settings_a.journal_path is not None and not settings_a.journal_path.exists()
        for _ in range(100):
            if not len(b.core.journal):
                break
            await asyncio.sleep(0.05)
        assert not len(b.core.journal)
        assert await _charged(led.admin) == (ANSWERS, sum(a["cost"] for a in answers))
    finally:
        await b.close()


async def test_holds_of_a_router_killed_mid_stream_expire_and_the_headroom_returns(
    tmp_path: Path, upstream: str, ledger: tuple[RunningLedger, Key]
) -> None:
    led, key = ledger
    await led.admin.set_budget("org", key.org_id, unit="usd", period="monthly", hard_limit=10**9)
    before = (await led.client.headroom(key.key_id)).budgets[0].remaining
    settings = _settings(led.target, upstream, tmp_path / "router-settlements.sqlite3", replica_id="a")
    proc, _ = await _router_a("stream", settings, key.secret, 2)  # two streams, each holding
    await _kill(proc)
    held = [b.held for b in await led.admin.list_budgets()]
    assert sum(held) > 0 and (await led.client.headroom(key.key_id)).budgets[0].remaining < before
    for _ in range(200):  # the TTL (1 s) and a sweep (every 0.2 s); no wall-clock figure is asserted
        if all(b.held == 0 for b in await led.admin.list_budgets()):
            break
        await asyncio.sleep(0.05)
    assert all(b.held == 0 for b in await led.admin.list_budgets())
    assert (await led.client.headroom(key.key_id)).budgets[0].remaining == before
    assert await _charged(led.admin) == (0, 0)  # nothing was billed for the unfinished streams
    journal = settings.journal_path
    assert journal is not None
    left = SettlementJournal(journal)
    assert not left.pending()  # nothing to settle later either
    left.close()
