"""Synthetic usage events for the console's scale target (``rationer ledger seed-events``).

Writes N events and their hourly rollups straight into a migrated ledger
database in bulk (SQLite: executemany in one transaction; PostgreSQL: COPY),
bypassing Authorize/Commit: this is test data for measuring reads, not a way
to bill anyone. The rollups are the same sums sql.rollups keeps per event, so
the invariant "rollups = events" holds on a seeded database too.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.ledger.models import UsageEvent
from services.ledger.money import utc_day
from services.ledger.sql.rollups import DAY_US, SUM_COLS, UPSERT, UPSERT_DAILY, contribution, hour_of

TIERS = (("local-small", "smollm2-135m", 20), ("local-large", "qwen2.5-1.5b", 150), ("frontier", "gpt-4o", 5000))
# (kind, weight): mostly charges, some cache hits, a few signals.
KINDS = (("charge", 80), ("cache_hit", 12), ("embedding", 3), ("denied", 3), ("soft_alert", 1), ("wrong_hit", 1))
EVENT_COLS = ("id", "time", "day", "kind", "request_id", "reservation_id", "org_id", "team_id", "user_id",
              "key_id", "project", "tier", "model", "prompt_tokens", "completion_tokens", "cost",
              "counterfactual_cost", "cache_hit", "latency_ms", "price_version", "detail", "overage",
              "overage_tokens", "record_id", "status")  # fmt: skip
CHUNK = 50_000


@dataclass(frozen=True)
class SeedSpec:
    count: int
    end_us: int  # events fall in [end - days, end)
    days: int = 30
    keys: int = 200
    seed: int = 1


def events(spec: SeedSpec) -> Iterator[UsageEvent]:
    rnd = random.Random(spec.seed)
    run = uuid.uuid4().hex[:8]
    owners = []
    for i in range(spec.keys):
        org, team = f"seed-org{i % 4}", f"seed-org{i % 4}/team{i % 20}"
        # A key is one app: one project tag (or none), as a project-bound key has.
        owners.append((f"k_seed{run}{i:04d}", org, team, f"{team}/u{i}@seed.test", f"proj{i % 5}" if i % 3 else ""))
    kinds = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    span = spec.days * 86_400_000_000
    for n in range(spec.count):
        key, org, team, user, project = owners[rnd.randrange(spec.keys)]
        tier, model, per_m = TIERS[rnd.randrange(len(TIERS))]
        kind = rnd.choices(kinds, weights)[0]
        p, c = rnd.randrange(10, 4000), rnd.randrange(1, 1000)
        cost = (p + c) * per_m * 1000 // 1_000_000 * 1000 if kind != "cache_hit" else 0
        cf = (p + c) * 5_000_000 // 1_000_000 * 1000
        signal = kind in ("denied", "soft_alert", "wrong_hit")
        status = 429 if kind == "denied" else 0 if signal else 499 if n % 50 == 0 else 200
        yield UsageEvent(
            f"e_seed{run}{n:09d}", spec.end_us - 1 - rnd.randrange(span), kind, f"rq{run}{n}", org, team, user,
            key, project, tier, model,
            0 if signal else p, 0 if signal else c, 0 if signal else cost, 0 if signal else cf,
            kind == "cache_hit", rnd.randrange(5, 3000), 1, status=status,
        )  # fmt: skip


def _row(ev: UsageEvent) -> tuple[Any, ...]:
    return (ev.event_id, ev.time_us, utc_day(ev.time_us), ev.kind, ev.request_id, None, ev.org_id, ev.team_id,
            ev.user_id, ev.key_id, ev.project, ev.tier, ev.model, ev.prompt_tokens, ev.completion_tokens,
            ev.cost, ev.counterfactual_cost, int(ev.cache_hit), ev.latency_ms, ev.price_version, "seed", 0, 0,
            ev.event_id if ev.kind == "cache_hit" else None, ev.status)  # fmt: skip


class _Rollups:
    def __init__(self) -> None:
        self.rows: dict[tuple[Any, ...], list[int]] = {}
        self.days: dict[tuple[Any, ...], list[int]] = {}

    def add(self, ev: UsageEvent) -> None:
        sums = contribution(ev)
        if sums is None:
            return
        rest = (ev.key_id, ev.tier, ev.model, ev.project, ev.org_id, ev.team_id, ev.user_id)
        hour, day = hour_of(ev.time_us), ev.time_us - ev.time_us % DAY_US
        for table, k in ((self.rows, (hour, utc_day(hour), *rest)), (self.days, (day, utc_day(day), *rest))):
            acc = table.setdefault(k, [0] * len(SUM_COLS))
            for i, v in enumerate(sums):
                acc[i] += v

    def params(self) -> list[tuple[Any, ...]]:
        return [(*k, *v) for k, v in self.rows.items()]

    def daily_params(self) -> list[tuple[Any, ...]]:
        return [(*k, *v) for k, v in self.days.items()]


def _chunks(spec: SeedSpec, roll: _Rollups) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for ev in events(spec):
        roll.add(ev)
        chunk.append(_row(ev))
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_INSERT = f"INSERT INTO events ({', '.join(EVENT_COLS)}) VALUES ({', '.join('?' for _ in EVENT_COLS)})"


def seed_sqlite(path: Path, spec: SeedSpec) -> int:
    """Into a migrated SQLite ledger (start the store once first)."""
    roll = _Rollups()
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for chunk in _chunks(spec, roll):
            conn.executemany(_INSERT, chunk)
        conn.executemany(UPSERT, roll.params())
        conn.executemany(UPSERT_DAILY, roll.daily_params())
        conn.execute("COMMIT")
    finally:
        conn.close()
    return spec.count


def seed_postgres(dsn: str, spec: SeedSpec) -> int:
    """Into a migrated PostgreSQL ledger, with COPY."""
    import psycopg

    roll = _Rollups()
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY events ({', '.join(EVENT_COLS)}) FROM STDIN") as cp:
                for chunk in _chunks(spec, roll):
                    for row in chunk:
                        cp.write_row(row)
            cur.executemany(UPSERT.replace("?", "%s"), roll.params())
            cur.executemany(UPSERT_DAILY.replace("?", "%s"), roll.daily_params())
        conn.commit()
        # A bulk load leaves the planner's statistics empty until autovacuum
        # gets to it; refresh them now, as autovacuum would on a live ledger.
        conn.execute("ANALYZE events")
        conn.execute("ANALYZE rollups_hourly")
        conn.execute("ANALYZE rollups_daily")
        conn.commit()
    return spec.count
