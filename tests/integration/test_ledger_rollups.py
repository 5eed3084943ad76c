"""Rollups = raw events, under random events and random queries, on SQLite and PostgreSQL.

Events go in through ``record_event`` (the one path every event insert
takes); every report read from the rollups (sql.reports.usage) must equal
the same report summed over the raw events (sql.admin.usage).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ledger.models import UsageEvent
from services.ledger.seed import SeedSpec, events, seed_postgres, seed_sqlite
from services.ledger.sql import admin as sql_admin
from services.ledger.sql import reports
from services.ledger.sql.rollups import DAY_US, HOUR_US, record_event
from services.ledger.store import SQLiteStore, Store
from services.ledger.store_postgres import PostgresStore

T0 = 1_900_000_000_000_000 - 1_900_000_000_000_000 % HOUR_US  # an hour boundary
SPAN = 3 * 24 * HOUR_US
KEYS = [("k_a", "o1", "o1/t1", "o1/t1/a@x"), ("k_b", "o1", "o1/t2", ""), ("k_c", "o2", "o2/t1", "o2/t1/c@x")]
KINDS = ["charge", "embedding", "cache_hit", "denied", "soft_alert", "wrong_hit", "release_note"]
GROUPS = ["team", "user", "project", "model", "day", "tier", "org", "key"]
_ids = itertools.count()

event_st = st.builds(
    lambda key, kind, t, tier, model, project, p, c, cost, cf, hit, over: UsageEvent(
        f"e_h{next(_ids)}", T0 + t, kind, f"rq{next(_ids)}", key[1], key[2], key[3], key[0], project, tier, model,
        p, c, cost, cf, hit, 5, 1, overage=over,
    ),
    st.sampled_from(KEYS), st.sampled_from(KINDS), st.integers(0, SPAN - 1), st.sampled_from(["small", "frontier"]),
    st.sampled_from(["m1", "m2"]), st.sampled_from(["", "web", "api"]), st.integers(0, 10**6), st.integers(0, 10**6),
    st.integers(0, 10**12), st.integers(0, 10**12), st.booleans(), st.integers(0, 10**9),
)  # fmt: skip
bound_st = st.one_of(st.none(), st.integers(-HOUR_US, SPAN + HOUR_US).map(lambda t: T0 + t),
                     st.integers(-2, 74).map(lambda h: T0 + h * HOUR_US),
                     st.integers(-1, 4).map(lambda d: T0 - T0 % DAY_US + d * DAY_US))  # fmt: skip
scope_st = st.sampled_from([("", ""), ("org", "o1"), ("team", "o1/t2"), ("user", "o1/t1/a@x"), ("key", "k_c"),
                            ("project", "o1/web")])  # fmt: skip
group_st = st.lists(st.sampled_from(GROUPS), max_size=2, unique=True)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[asyncio.AbstractEventLoop, Store]]:
    loop = asyncio.new_event_loop()
    store: Store
    if request.param == "postgres":
        store = PostgresStore(request.getfixturevalue("pg_dsn"))
    else:
        store = SQLiteStore(tmp_path / "ledger.sqlite3")
    loop.run_until_complete(store.start())
    yield loop, store
    loop.run_until_complete(store.close())
    loop.close()


def _write(store: Store, evs: list[UsageEvent]) -> object:
    def op():  # type: ignore[no-untyped-def]
        for ev in evs:
            rid = ev.event_id if ev.kind == "cache_hit" else None
            yield from record_event(ev, None, "", rid)

    return store.write(op)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(evs=st.lists(event_st, max_size=25), start=bound_st, end=bound_st, scope=scope_st, group=group_st)
def test_rollup_reports_equal_raw_event_reports(
    backend: tuple[asyncio.AbstractEventLoop, Store], evs: list[UsageEvent], start: int | None, end: int | None,
    scope: tuple[str, str], group: list[str],
) -> None:  # fmt: skip
    loop, store = backend
    loop.run_until_complete(_write(store, evs))  # the database grows over the examples: the invariant still holds
    q = sql_admin.UsageQuery(scope[0], scope[1], start, end, tuple(group))
    raw = loop.run_until_complete(store.read(lambda: sql_admin.usage(q)))
    rolled = loop.run_until_complete(store.read(lambda: reports.usage(q)))
    assert rolled == raw
    # And the rollup table's grand totals are the events' totals.
    everything = sql_admin.UsageQuery("", "", None, None, ())
    assert loop.run_until_complete(store.read(lambda: reports.usage(everything))) == loop.run_until_complete(
        store.read(lambda: sql_admin.usage(everything))
    )


def test_split_finds_the_whole_hours() -> None:
    assert reports.split(None, None) == (None, None)
    assert reports.split(T0 + 1, T0 + HOUR_US) is None
    assert reports.split(T0 + 1, T0 + 3 * HOUR_US - 1) == (T0 + HOUR_US, T0 + 2 * HOUR_US)
    assert reports.split(T0, T0 + HOUR_US) == (T0, T0 + HOUR_US)
    d0 = T0 - T0 % DAY_US
    assert reports.pieces(None, None) == [("rollups_daily", "day_start", None, None)]
    assert reports.pieces(d0 + 5, d0 + 2 * DAY_US + HOUR_US + 7) == [
        ("events", "time", d0 + 5, d0 + HOUR_US),
        ("events", "time", d0 + 2 * DAY_US + HOUR_US, d0 + 2 * DAY_US + HOUR_US + 7),
        ("rollups_daily", "day_start", d0 + DAY_US, d0 + 2 * DAY_US),
        ("rollups_hourly", "hour", d0 + HOUR_US, d0 + DAY_US),
        ("rollups_hourly", "hour", d0 + 2 * DAY_US, d0 + 2 * DAY_US + HOUR_US),
    ]  # fmt: skip


def test_seeded_events_have_matching_rollups(backend: tuple[asyncio.AbstractEventLoop, Store], tmp_path: Path,
                                             request: pytest.FixtureRequest) -> None:  # fmt: skip
    loop, store = backend
    spec = SeedSpec(3000, T0 + SPAN, days=3, keys=7, seed=3)
    if isinstance(store, SQLiteStore):
        seed_sqlite(tmp_path / "ledger.sqlite3", spec)
    else:
        seed_postgres(request.getfixturevalue("pg_dsn"), spec)
    assert len(list(events(SeedSpec(10, T0, keys=2)))) == 10
    for group in ([], ["key"], ["day", "tier"]):
        q = sql_admin.UsageQuery("", "", T0 + 7, T0 + SPAN - 11, tuple(group))
        raw = loop.run_until_complete(store.read(lambda q=q: sql_admin.usage(q)))
        assert raw and loop.run_until_complete(store.read(lambda q=q: reports.usage(q))) == raw
