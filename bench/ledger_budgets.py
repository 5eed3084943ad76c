"""`rationer bench budgets`: p95 of the Budgets page's read (BudgetStatus) on N seeded usage events.

Seeds N events (services.ledger.seed, 30 days) into a fresh SQLite file and
a fresh PostgreSQL schema, adds budgets on seeded scopes of every kind (org,
team, user, key, project; monthly, plus a daily one read from the hourly
rollups), with "now" on the 28th (a whole month of burn-down), and times
through the real store drivers: the admin's page (every budget: burn-down
series, forecast, alerts) and one budget alone. The
baseline, in the same run, is the plain budget listing (ListBudgets' read,
no series); the ratio says what the burn-down and forecast cost on top.
Target: p95 <= 300 ms at 1,000,000 events on the 2-core box.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from bench.ledger_console import p95, seeded_store
from services.ledger import seed as seeding
from services.ledger.budget_alerts import statuses
from services.ledger.money import from_datetime, period_bounds
from services.ledger.sql import admin as sql_admin
from services.ledger.sql.common import Op
from services.ledger.store import Store

TARGET_MS = 300.0
# Late in a month, so a monthly budget's burn-down reads a whole month of daily rollups (the seed's
# 30 days end here); a fixed instant, not the wall clock, so every run reads the same shape.
NOW = datetime(2031, 3, 28, 15, tzinfo=UTC)


def _add_budgets(now: int) -> Op[list[str]]:
    """Budgets on the scopes of one seeded key (its org, team, user, key, project) and a daily org one."""
    rows = yield ("SELECT key_id, user_id, team_id, org_id, project FROM rollups_daily WHERE project <> ''"
                  " ORDER BY day_start DESC LIMIT 1", ())  # fmt: skip
    key, user, team, org, project = rows[0]
    scopes = [("org", org, "monthly"), ("team", team, "monthly"), ("user", user, "monthly"),
              ("key", key, "monthly"), ("project", f"{org}/{project}", "monthly"), ("org", org, "daily")]
    ids = []
    for kind, sid, period in scopes:
        bid = f"budget:{kind}:{sid}:usd:{period}"
        start, _ = period_bounds(period, now)
        yield ("INSERT INTO budgets (id, scope_key, unit, period, hard_limit, soft_fraction, period_start, spent,"
               " updated_at) VALUES (?, ?, 'usd', ?, ?, 0.8, ?, 0, ?)",
               (bid, f"{kind}:{sid}", period, 10**15, start, now))  # fmt: skip
        ids.append(bid)
    return ids


def _time(times: list[float]) -> dict[str, float]:
    return {"p50_ms": round(sorted(times)[len(times) // 2], 1), "p95_ms": round(p95(times), 1)}


async def _measure(store: Store, now: int, one: str, repeats: int) -> dict[str, dict[str, float]]:
    reads: dict[str, Callable[[], Op[Any]]] = {
        "list_budgets (baseline)": partial(sql_admin.list_budgets, "", now),
        "budgets_page_all": partial(statuses, None, "", now, 7),
        "budget_status_one": partial(statuses, None, one, now, 7),
    }
    out = {}
    for name, op in reads.items():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            await store.read(op)
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = _time(times)
    return out


async def run_backend(backend: str, count: int, repeats: int, dsn: str, keys: int) -> dict[str, Any]:
    now = from_datetime(NOW)
    spec = seeding.SeedSpec(count, now, days=30, keys=keys, seed=1)
    async with seeded_store(backend, spec, dsn, "budgets") as (store, _):
        ids = await store.write(partial(_add_budgets, now))
        result = await _measure(store, now, ids[1], repeats)
    page = result["budgets_page_all"]["p95_ms"]
    base = result["list_budgets (baseline)"]["p95_ms"]
    return {"events": count, "keys": keys, "budgets": len(ids), "reads": result, "page_p95_ms": page,
            "ratio_page_to_baseline": round(page / base, 1) if base else None, "target_ms": TARGET_MS,
            "meets_target": page <= TARGET_MS and result["budget_status_one"]["p95_ms"] <= TARGET_MS}  # fmt: skip


def main(json_out: bool, backend: str, count: int, repeats: int, dsn: str, keys: int = 50) -> None:
    backends = ["sqlite", "postgres"] if backend == "both" else [backend]
    results = {b: asyncio.run(run_backend(b, count, repeats, dsn, keys)) for b in backends}
    if json_out:
        print(json.dumps(results))
        return
    for b, r in results.items():
        print(f"{b}: {r['events']:,} events, {r['budgets']} budgets; Budgets page p95 {r['page_p95_ms']} ms, "
              f"{r['ratio_page_to_baseline']}x the plain listing (target <= {TARGET_MS:.0f} ms: "
              f"{'met' if r['meets_target'] else 'NOT met'})")  # fmt: skip
        for name, t in r["reads"].items():
            print(f"  {name:26} p50 {t['p50_ms']:7.1f} ms  p95 {t['p95_ms']:7.1f} ms")
