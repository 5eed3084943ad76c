"""No commit takes a hard-limited budget past its limit; what does not fit is overage.

On SQLite and PostgreSQL. The ledger's clock is a FixedClock, so holds expire
when the test moves time, not after sleeps.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from rationer.errors import ResourceExhausted
from rationer.platform.clock import FixedClock
from services.ledger.calls import CommitCall
from services.ledger.client import LedgerClient
from services.ledger.report import render
from services.ledger.settings import LedgerSettings
from services.ledger.store import MIGRATIONS, SQLiteStore
from services.ledger.store_postgres import PostgresStore
from testsupport.ledger import ADMIN_TOKEN, RunningLedger, make_key, running_ledger, settings_for

T = TypeVar("T")
IN_PRICE, OUT_PRICE = 2_500_000_000, 10_000_000_000  # frontier, the seeded reference


def cost(p: int, c: int) -> int:
    return -(-(p * IN_PRICE + c * OUT_PRICE) // 1_000_000)


def clock() -> FixedClock:
    return FixedClock(datetime(2031, 5, 14, 9, tzinfo=UTC))


# "postgres-escrow": the same rules hold with budget escrow on (E1, docs/ledger.md).
@pytest.fixture(params=["sqlite", "postgres", "postgres-escrow"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerSettings:
    backend, _, escrow = request.param.partition("-")
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else ""
    return settings_for(backend, tmp_path, dsn, escrow=bool(escrow))


async def _events(led: RunningLedger, key_id: str) -> list[Any]:
    return [e for e in await led.admin.list_events() if e.key_id == key_id and e.kind == "charge"]


async def test_usage_above_the_hold_is_charged_only_as_far_as_the_budget_has_room(
    settings: LedgerSettings,
) -> None:
    async with running_ledger(settings, clock=clock()) as led:
        k = await make_key(led.admin)
        hold = cost(100, 100)
        await led.admin.set_budget("key", k.key_id, unit="usd", period="lifetime", hard_limit=2 * hold)
        a = await led.client.authorize(k.key_id, "frontier", prompt_tokens=100, max_completion_tokens=100)
        b = await led.client.authorize(k.key_id, "frontier", prompt_tokens=100, max_completion_tokens=100)
        # a's call used far more than its hold; b's hold must stay whole.
        over = await led.client.commit(CommitCall(a.reservation_id, k.key_id, 100, 500))
        assert (over.event.cost, over.event.overage) == (hold, cost(100, 500) - hold)
        assert "over hold by $" in over.event.detail and "is at its hard limit" in over.event.detail
        assert (over.event.prompt_tokens, over.event.completion_tokens) == (100, 500)  # the true usage
        fits = await led.client.commit(CommitCall(b.reservation_id, k.key_id, 100, 100))
        assert (fits.event.cost, fits.event.overage) == (hold, 0)
        (budget,) = await led.admin.list_budgets("key", k.key_id)
        assert budget.spent == budget.hard_limit == sum(e.cost.nano_usd for e in await _events(led, k.key_id))
        async with LedgerClient(led.target, bearer=ADMIN_TOKEN) as reader:
            rows = await reader.usage(scope=("key", k.key_id), group_by=["team"])
        assert (rows[0].cost, rows[0].overage) == (2 * hold, cost(100, 500) - hold)
        # Savings are against the true cost: the overage was spent all the same.
        assert rows[0].savings == rows[0].counterfactual_cost - rows[0].cost - rows[0].overage
        report = json.loads(render(rows, "team", "json", "2031-05"))
        assert report["total"]["overage_nano_usd"] == cost(100, 500) - hold
        assert "overage_usd" in render(rows, "team", "csv", "2031-05").splitlines()[0]


async def test_a_late_commit_never_takes_room_held_by_another_call(settings: LedgerSettings) -> None:
    c = clock()
    async with running_ledger(settings, clock=c) as led:
        k = await make_key(led.admin)
        one = cost(1000, 1000)
        await led.admin.set_budget("org", k.org_id, unit="usd", period="daily", hard_limit=2 * one)
        late = await led.client.authorize(k.key_id, "frontier", prompt_tokens=1000, max_completion_tokens=1000,
                                          ttl_s=30)  # fmt: skip
        c.advance(31)  # its hold expired; the model's answer arrives later
        live = await led.client.authorize(k.key_id, "frontier", prompt_tokens=1000, max_completion_tokens=1000)
        billed = await led.client.commit(CommitCall(late.reservation_id, k.key_id, 2000, 2000, bill_late=True))
        assert billed.event.detail.startswith("late: hold expired at")
        # Room = limit - spent - the live hold of the other call = one call's worth.
        assert (billed.event.cost, billed.event.overage) == (one, cost(2000, 2000) - one)
        done = await led.client.commit(CommitCall(live.reservation_id, k.key_id, 1000, 1000))
        assert (done.event.cost, done.event.overage) == (one, 0)
        (b,) = await led.admin.list_budgets("org", k.org_id)
        assert b.spent == 2 * one == b.hard_limit and b.held == 0


async def test_token_budgets_cap_tokens_and_record_overage_tokens(settings: LedgerSettings) -> None:
    async with running_ledger(settings, clock=clock()) as led:
        k = await make_key(led.admin)
        await led.admin.set_budget("team", k.team_id, unit="tokens", period="monthly", hard_limit=300)
        r = await led.client.authorize(k.key_id, "local-small", prompt_tokens=100, max_completion_tokens=100)
        done = await led.client.commit(CommitCall(r.reservation_id, k.key_id, 100, 300))
        # No USD budget: the money is charged in full; the token budget is capped.
        assert (done.event.overage, done.event.overage_tokens) == (0, 100)
        assert "overage 100 tokens not counted" in done.event.detail
        (b,) = await led.admin.list_budgets("team", k.team_id)
        assert b.spent == 300


async def test_no_budget_means_the_true_cost_is_charged(settings: LedgerSettings) -> None:
    async with running_ledger(settings, clock=clock()) as led:
        k = await make_key(led.admin)
        r = await led.client.authorize(k.key_id, "frontier", prompt_tokens=10, max_completion_tokens=10)
        done = await led.client.commit(CommitCall(r.reservation_id, k.key_id, 10, 500))
        assert (done.event.cost, done.event.overage) == (cost(10, 500), 0)


# ---- property: random holds, usage, expiry and late commits -----------------

# A call: (estimated prompt, max completion, hold ttl s, used prompt, used
# completion, seconds before the next call). Usage goes up to twice the
# largest hold, so commits land within, above and far above their holds,
# and waits up to 120 s expire holds into late commits.
Call = tuple[int, int, int, int, int, int]
_call = st.tuples(st.integers(0, 1500), st.integers(0, 1500), st.integers(1, 90), st.integers(0, 3000),
                  st.integers(0, 3000), st.integers(0, 120))  # fmt: skip


@contextmanager
def _ledger_thread(s: LedgerSettings, c: FixedClock) -> Iterator[tuple[RunningLedger, Callable[[Any], Any]]]:
    """A ledger on its own loop thread, so sync hypothesis examples can drive it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(120)  # type: ignore[arg-type]

    cm = running_ledger(s, clock=c)
    led = run(cm.__aenter__())
    try:
        yield led, run
    finally:
        run(cm.__aexit__(None, None, None))
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def _play(led: RunningLedger, c: FixedClock, org: str, calls: list[Call], overlap: int, usd: int,
                tokens: int) -> None:  # fmt: skip
    k = await make_key(led.admin, org=org)
    await led.admin.set_budget("key", k.key_id, unit="usd", period="lifetime", hard_limit=usd)
    await led.admin.set_budget("org", k.org_id, unit="tokens", period="lifetime", hard_limit=tokens)
    open_: list[tuple[str, int, int]] = []  # up to `overlap` calls in flight at once
    for est_p, est_c, ttl, use_p, use_c, wait in calls:
        try:
            r = await led.client.authorize(k.key_id, "frontier", prompt_tokens=est_p, max_completion_tokens=est_c,
                                           ttl_s=ttl)  # fmt: skip
            open_.append((r.reservation_id, use_p, use_c))
        except ResourceExhausted:
            pass
        c.advance(wait)
        while len(open_) > overlap or (open_ and wait % 3 == 0):
            res_id, p, u = open_.pop(0)
            ev = (await led.client.commit(CommitCall(res_id, k.key_id, p, u, bill_late=True))).event
            assert ev.cost + ev.overage == cost(p, u) and ev.overage >= 0 and ev.overage_tokens >= 0
    events = await _events(led, k.key_id)
    budgets = {b.unit: b for b in await led.admin.list_budgets("key", k.key_id)}
    budgets.update({b.unit: b for b in await led.admin.list_budgets("org", k.org_id)})
    for b in budgets.values():
        assert b.spent <= b.hard_limit, f"{b.id} spent {b.spent} past its hard limit {b.hard_limit}"
    by_unit = {b.id.split(":")[-2]: b.spent for b in budgets.values()}
    assert by_unit["usd"] == sum(e.cost.nano_usd for e in events)
    assert by_unit["tokens"] == sum(e.prompt_tokens + e.completion_tokens - e.overage_tokens for e in events)


def test_no_commit_takes_a_budget_past_its_hard_limit_property(settings: LedgerSettings) -> None:
    c, orgs = clock(), count()
    with _ledger_thread(settings, c) as (led, run):

        @hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(calls=st.lists(_call, min_size=1, max_size=10), overlap=st.integers(0, 3),
               usd=st.integers(cost(300, 300), 4 * cost(1000, 1000)), tokens=st.integers(600, 8000))  # fmt: skip
        def check(calls: list[Call], overlap: int, usd: int, tokens: int) -> None:
            run(_play(led, c, f"prop{next(orgs)}", calls, overlap, usd, tokens))

        check()


# ---- the migration keeps a v1 database's data -------------------------------


def _v1_rows() -> list[str]:
    return [
        "INSERT INTO reservations (id, request_id, key_id, org_id, team_id, user_id, project, tier, model,"
        " price_version, held_usd, held_tokens, state, created_at, expires_at)"
        " VALUES ('r_old', 'rq-1', 'k_a', 'o', 'o/t', '', '', 'frontier', 'm', 1, 5, 2, 'held', 1, 2)",
        "INSERT INTO events (id, time, day, kind, request_id, org_id, team_id, user_id, key_id, project, tier,"
        " model, prompt_tokens, completion_tokens, cost, counterfactual_cost, cache_hit, latency_ms,"
        " price_version) VALUES ('e_old', 1, '1970-01-01', 'cache_hit', 'hit-1', 'o', 'o/t', '', 'k_a', '',"
        " 'frontier', 'm', 1, 1, 0, 9, 1, 0, 1)",
    ]


async def test_v1_database_upgrades_in_place(tmp_path: Path, pg_dsn: str) -> None:
    v1 = (MIGRATIONS / "0001_init.sql").read_text()
    path = tmp_path / "old.sqlite3"
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.executescript(v1 + "\nCREATE TABLE schema_version (version INTEGER PRIMARY KEY);"
                           "INSERT INTO schema_version VALUES (1);" + ";".join(_v1_rows()))  # fmt: skip
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(v1.encode())
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY); INSERT INTO schema_version VALUES (1)")
        for row in _v1_rows():
            conn.execute(row.encode())
    for store in (SQLiteStore(path), PostgresStore(pg_dsn)):
        await store.start()
        try:

            def probe() -> Any:
                rows = yield ("SELECT request_id, key_id FROM reservations", ())
                hits = yield ("SELECT record_id, overage FROM events", ())
                # The same request id under another key is now independent.
                yield ("INSERT INTO reservations (id, request_id, key_id, org_id, team_id, user_id, project,"
                       " tier, model, price_version, held_usd, held_tokens, state, created_at, expires_at)"
                       " VALUES ('r_new', 'rq-1', 'k_b', 'o', 'o/t', '', '', 'frontier', 'm', 1, 5, 2, 'held',"
                       " 1, 2)", ())  # fmt: skip
                return [tuple(r) for r in rows], [tuple(r) for r in hits]

            assert await store.write(probe) == ([("rq-1", "k_a")], [("hit-1", 0)])
        finally:
            await store.close()
