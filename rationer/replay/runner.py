"""One replay end to end: keys, prices, drive, ledger reconciliation, driver check.

Produces the result document (``rationer-replay-result/1``) that ``report
replay`` reads: run metadata, the router's tiers, the ledger's prices, one
record per trace line, the ledger's own Usage totals for the run's orgs and
the driver's capacity against a no-op router.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

from rationer.errors import InvalidArgument
from rationer.replay.driver import DriveOptions, Driver, DriveResult, Record
from rationer.replay.provision import KeyBook, provision
from rationer.replay.trace import Trace

log = structlog.get_logger(__name__)
RESULT_FORMAT = "rationer-replay-result/1"


@dataclass(frozen=True)
class ReplayConfig:
    address: str
    ledger: str
    speed: float | None = None
    concurrency: int = 8
    admin_token: str = ""
    provision: bool = False
    keys_path: Path | None = None
    org_suffix: str | None = None  # None: a fresh "-<run id>" when provisioning
    driver_check: bool = True
    settle_timeout_s: float = 30.0
    think_s: float = 0.0  # DriveOptions.think_s


def parse_speed(text: str) -> float | None:
    """``max`` or ``<factor>x`` (``10x``, ``0.5x``, ``1000``)."""
    t = text.strip().lower()
    if t == "max":
        return None
    try:
        value = float(t[:-1] if t.endswith("x") else t)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InvalidArgument(f"--speed must be 'max' or a positive factor like '10x', got {text!r}")
    return value


async def _keys(trace: Trace, cfg: ReplayConfig, run_id: str) -> KeyBook:
    if cfg.provision:
        if not cfg.admin_token:
            raise InvalidArgument("--provision needs --admin-token (or RATIONER_ADMIN_TOKEN)")
        suffix = f"-{run_id}" if cfg.org_suffix is None else cfg.org_suffix
        book = await provision(trace, cfg.ledger, cfg.admin_token, org_suffix=suffix)
        if cfg.keys_path is not None:
            book.save(cfg.keys_path)
        return book
    if cfg.keys_path is None:
        raise InvalidArgument("pass --keys FILE (from an earlier --provision) or --provision to create keys")
    return KeyBook.load(cfg.keys_path)


async def _prices(ledger: str) -> list[dict[str, Any]]:
    from services.ledger.client import LedgerClient

    async with LedgerClient(ledger) as client:
        prices = await client.list_prices()
    return [{"tier": p.tier, "model": p.model, "input_per_million": p.input_per_million,
             "output_per_million": p.output_per_million, "is_reference": p.is_reference} for p in prices]  # fmt: skip


async def ledger_usage(ledger: str, org_keys: dict[str, str], start_us: int) -> dict[str, dict[str, int]]:
    """The ledger's own Usage per team (charges and cache hits) since ``start_us``.

    ``org_keys`` maps each org id to an API key of that org: a key may read its
    own org's usage, so no admin credential is needed.
    """
    from services.ledger.client import LedgerClient

    out: dict[str, dict[str, int]] = {}
    for org, secret in sorted(org_keys.items()):
        async with LedgerClient(ledger, bearer=secret) as client:
            for row in await client.usage(scope=("org", org), start_us=start_us, group_by=("team",)):
                out[row.group.get("team", "")] = {"requests": row.requests, "cost_nano_usd": row.cost,
                                                  "cache_hits": row.cache_hits}  # fmt: skip
    return out


async def _settled_usage(cfg: ReplayConfig, book: KeyBook, start_us: int, expected: int) -> dict[str, Any]:
    # Cache hits are recorded off the response path; wait until the ledger has them all.
    deadline = time.monotonic() + cfg.settle_timeout_s
    while True:
        usage = await ledger_usage(cfg.ledger, {e.org_id: e.secret for e in book.keys.values()}, start_us)
        if sum(u["requests"] for u in usage.values()) >= expected or time.monotonic() > deadline:
            return usage
        await asyncio.sleep(0.2)


async def _budget_events(cfg: ReplayConfig, book: KeyBook, start_us: int, kind: str) -> list[dict[str, Any]]:
    """The ledger's ``soft_alert`` or ``denied`` events of the run's orgs (needs the admin credential)."""
    if not cfg.admin_token:
        return []
    from services.ledger.admin_client import LedgerAdminClient

    orgs = set(book.org_ids.values())
    async with LedgerAdminClient(cfg.ledger, cfg.admin_token) as admin:
        events = await admin.list_events(kind=kind, start_us=start_us)
    return [{"request_id": e.request_id, "team_id": e.team_id, "org_id": e.org_id} for e in events if e.org_id in orgs]


def reconcile(records: list[Record], usage: dict[str, dict[str, int]], book: KeyBook) -> dict[str, Any]:
    """Replay-side totals (what the router said it charged) against the ledger's Usage."""
    ok = [r for r in records if r.status == "ok"]
    by_team: Counter[str] = Counter()
    cost_by_team: Counter[str] = Counter()
    for r in ok:
        tid = book.key_for(r.org, r.team, r.user).team_id
        by_team[tid] += 1
        cost_by_team[tid] += r.cost
    replay_cost, ledger_cost = sum(r.cost for r in ok), sum(u["cost_nano_usd"] for u in usage.values())
    replay_n, ledger_n = len(ok), sum(u["requests"] for u in usage.values())
    teams_match = all(
        usage.get(t, {}).get("requests") == by_team[t] and usage.get(t, {}).get("cost_nano_usd") == cost_by_team[t]
        for t in set(by_team) | set(usage)
    )
    return {
        "replay_requests": replay_n, "ledger_requests": ledger_n, "replay_cost_nano_usd": replay_cost,
        "ledger_cost_nano_usd": ledger_cost, "teams_match": teams_match,
        "match": replay_n == ledger_n and replay_cost == ledger_cost and teams_match,
        "ledger_by_team": usage,
    }  # fmt: skip


async def driver_capacity(trace: Trace, concurrency: int) -> dict[str, Any]:
    """Requests/s the driver pushes through a no-op router (same lines, max speed)."""
    from rationer.replay.noop import noop_keys, running_noop_router

    async with running_noop_router() as address:
        res = await Driver(DriveOptions(address, None, concurrency, run_id="noop"), noop_keys(trace.lines)).run(
            trace.lines
        )
    return {"requests": len(res.records), "wall_s": res.wall_s, "rps": res.served_rps,
            "errors": sum(r.status != "ok" for r in res.records)}  # fmt: skip


async def run_replay(trace: Trace, cfg: ReplayConfig, on_done: Callable[[Record], None] | None = None,
                     trace_path: str = "",
                     on_start: Callable[[Record], None] | None = None) -> dict[str, Any]:  # fmt: skip
    run_id = uuid.uuid4().hex[:8]
    book = await _keys(trace, cfg, run_id)
    prices = await _prices(cfg.ledger)
    start_us = time.time_ns() // 1000 - 1_000_000
    started = time.time()
    drive: DriveResult = await Driver(DriveOptions(cfg.address, cfg.speed, cfg.concurrency, run_id=run_id,
                                                   think_s=cfg.think_s),
                                      book, on_done, on_start).run(trace.lines)  # fmt: skip
    ok = sum(r.status == "ok" for r in drive.records)
    usage = await _settled_usage(cfg, book, start_us, ok)
    result: dict[str, Any] = {
        "format": RESULT_FORMAT,
        "trace": {"path": trace_path, "name": trace.header.name, "duration_s": trace.header.duration_s,
                  "budgets": [asdict(b) for b in trace.header.budgets], "generator": trace.header.generator},
        "run": {"run_id": run_id, "address": cfg.address, "ledger": cfg.ledger, "speed": cfg.speed or "max",
                "concurrency": cfg.concurrency, "started_at": started, "wall_s": drive.wall_s,
                "served_rps": drive.served_rps, "org_ids": book.org_ids},
        "tiers": drive.tiers, "prices": prices, "records": [r.to_json() for r in drive.records],
        "ledger": {"check": reconcile(drive.records, usage, book),
                   "soft_alerts": await _budget_events(cfg, book, start_us, "soft_alert"),
                   "denied_holds": await _budget_events(cfg, book, start_us, "denied")},
    }  # fmt: skip
    if cfg.driver_check:
        cap = await driver_capacity(trace, cfg.concurrency)
        cap["gateway_rps"] = drive.served_rps
        cap["ratio"] = cap["rps"] / drive.served_rps if drive.served_rps else None
        result["driver_check"] = cap
    return result
