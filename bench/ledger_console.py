"""`rationer bench console`: p95 of the console's report queries on N seeded usage events.

Seeds N events (services.ledger.seed) into a fresh SQLite file and a fresh
PostgreSQL schema, then times each query the console's Overview and
Chargeback pages load (sql.reports.usage: hourly rollups plus the raw ragged
ends) and the Requests page's pages (sql.requests.list_requests: raw events
along the (scope, time, id) indexes) through the real store drivers. The target: every query's p95
<= 300 ms at 1,000,000 events on the 2-core box.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

from services.ledger import seed as seeding
from services.ledger.sql import admin as sql_admin
from services.ledger.sql import reports
from services.ledger.sql.common import Op
from services.ledger.sql.requests import RequestsQuery, Scope, list_requests
from services.ledger.store import SQLiteStore, Store
from services.ledger.store_postgres import PostgresStore

TARGET_MS = 300.0
DAY_US = 86_400_000_000


def queries(end_us: int) -> dict[str, sql_admin.UsageQuery]:
    """The pages' data: a 30-day period ending now (ragged ends, as a date range gives) and one team."""
    start = end_us - 30 * DAY_US
    q = sql_admin.UsageQuery
    return {
        "overview_totals": q("", "", start, end_us, ()),
        "overview_by_tier": q("", "", start, end_us, ("tier",)),
        "overview_daily": q("", "", start, end_us, ("day",)),
        "overview_daily_by_tier": q("", "", start, end_us, ("day", "tier")),
        "chargeback_by_org_team": q("", "", start, end_us, ("org", "team")),
        "chargeback_by_user": q("", "", start, end_us, ("user",)),
        "chargeback_by_key": q("", "", start, end_us, ("key",)),
        "chargeback_by_project": q("", "", start, end_us, ("project",)),
        "chargeback_by_model": q("", "", start, end_us, ("model",)),
        "team_by_key": q("team", "seed-org0/team0", start, end_us, ("key",)),
    }


def requests_queries(end_us: int, key_id: str) -> dict[str, RequestsQuery]:
    """The Requests page: its first page in each role's scope, filtered pages, and a page a week back."""
    start, q, team = end_us - 30 * DAY_US, RequestsQuery, Scope("team_id", "seed-org0/team0")
    return {
        "requests_all": q(Scope(), start, end_us),
        "requests_org": q(Scope("org_id", "seed-org0"), start, end_us),
        "requests_team": q(team, start, end_us),
        "requests_key": q(Scope(), start, end_us, key_id=key_id),
        "requests_team_tier_hits": q(team, start, end_us, tier="frontier", cache="hit"),
        "requests_denied_frontier": q(Scope(), start, end_us, tier="frontier", status=429),
        "requests_page_week_back": q(Scope(), start, end_us, cursor=(end_us - 7 * DAY_US, "~")),
        "requests_team_page_200": q(team, start, end_us, page_size=200),
    }


def _a_key() -> Op[str]:
    rows = yield ("SELECT key_id FROM events WHERE team_id = 'seed-org0/team0' LIMIT 1", ())
    return str(rows[0][0])


def _rollup_rows() -> Op[int]:
    rows = yield ("SELECT COUNT(*) FROM rollups_hourly", ())
    return int(rows[0][0])


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20)[-1] if len(xs) >= 2 else xs[0]


async def _measure(store: Store, end_us: int, repeats: int) -> dict[str, dict[str, float]]:
    ops: dict[str, Any] = {name: partial(reports.usage, q) for name, q in queries(end_us).items()}
    key_id = await store.read(_a_key)
    ops |= {name: partial(list_requests, q) for name, q in requests_queries(end_us, key_id).items()}
    out = {}
    for name, op in ops.items():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            await store.read(op)
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(p95(times), 1)}
    return out


@contextlib.asynccontextmanager
async def seeded_store(backend: str, spec: seeding.SeedSpec, dsn: str, name: str) -> AsyncIterator[tuple[Store, float]]:
    """A started store on a fresh SQLite file or PostgreSQL schema holding ``spec``'s events, and the seconds
    seeding took; the schema is dropped afterwards. Shared by `bench console` and `bench budgets`."""
    tmp = Path(tempfile.mkdtemp(prefix=f"rationer-bench-{name}-"))
    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    store: Store
    if backend == "sqlite":
        store = SQLiteStore(tmp / "ledger.sqlite3")
    else:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        dsn = f"{dsn}{'&' if '?' in dsn else '?'}options=-csearch_path%3D{schema}"
        store = PostgresStore(dsn)
    await store.start()
    try:
        t0 = time.perf_counter()
        if backend == "sqlite":
            await asyncio.to_thread(seeding.seed_sqlite, tmp / "ledger.sqlite3", spec)
        else:
            await asyncio.to_thread(seeding.seed_postgres, dsn, spec)
        yield store, time.perf_counter() - t0
    finally:
        await store.close()
        if backend == "postgres":
            import psycopg

            with psycopg.connect(dsn.split("?")[0], autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def run_backend(backend: str, count: int, repeats: int, dsn: str, keys: int) -> dict[str, Any]:
    end_us = int(time.time() * 1e6)
    spec = seeding.SeedSpec(count, end_us, days=30, keys=keys, seed=1)
    async with seeded_store(backend, spec, dsn, "console") as (store, seed_s):
        result = await _measure(store, end_us, repeats)
        rollup_rows = await store.read(_rollup_rows)
    worst = max(r["p95_ms"] for r in result.values())
    return {"events": count, "keys": keys, "rollup_rows": rollup_rows, "seed_s": round(seed_s, 1),
            "queries": result, "worst_p95_ms": worst, "target_ms": TARGET_MS,
            "meets_target": worst <= TARGET_MS}  # fmt: skip


def main(json_out: bool, backend: str, count: int, repeats: int, dsn: str, keys: int = 50) -> None:
    backends = ["sqlite", "postgres"] if backend == "both" else [backend]
    results = {b: asyncio.run(run_backend(b, count, repeats, dsn, keys)) for b in backends}
    if json_out:
        print(json.dumps(results))
        return
    for b, r in results.items():
        print(f"{b}: {r['events']:,} events, {r['keys']} keys, {r['rollup_rows']:,} rollup rows "
              f"(seeded in {r['seed_s']}s); worst p95 {r['worst_p95_ms']} ms "
              f"(target <= {TARGET_MS:.0f} ms: {'met' if r['meets_target'] else 'NOT met'})")  # fmt: skip
        for name, t in r["queries"].items():
            print(f"  {name:26} p50 {t['p50_ms']:7.1f} ms  p95 {t['p95_ms']:7.1f} ms")
