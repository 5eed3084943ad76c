"""L21/L22: an alert is raised once per crossing per period, and a delivery is sent by one replica.

- Two ledger servers on one PostgreSQL database commit concurrently across
  every line of a budget: exactly one alert per line crossed, one delivery
  per alert and webhook, and their two deliverers together send each once.
- The UNIQUE key alone (without the budget row locks) keeps two replicas
  raising the same alert at once to one row.
- Property (hypothesis, SQLite): for random commit sizes, usage above the
  hold, limits and lines, the alerts raised are exactly the lines the spend
  reached, each once, stamped with the spend of the commit that crossed it.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rationer.errors import ResourceExhausted
from rationer.platform.clock import FixedClock
from services.ledger import roles
from services.ledger.admin import KeySpec
from services.ledger.calls import CommitCall
from services.ledger.models import AuthorizeInput
from services.ledger.server import LedgerDeps
from services.ledger.sql import admin as sql_admin
from services.ledger.sql import alerts as sql_alerts
from services.ledger.sql.common import load_budgets
from services.ledger.wiring import build_deps, close_deps
from testsupport.ledger import RunningLedger, make_key, running_ledger, settings_for
from testsupport.webhooks import webhook_receiver

START = datetime(2031, 3, 15, 12, tzinfo=UTC)
PER_CALL = 2000
LINES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]


async def _call(led: RunningLedger, key_id: str) -> bool:
    try:
        r = await led.client.authorize(key_id, "local-small", prompt_tokens=100, max_completion_tokens=50)
    except ResourceExhausted:
        return False
    await led.client.commit(CommitCall(r.reservation_id, key_id, 100, 50))
    return True


async def test_two_replicas_raise_each_alert_once_and_deliver_it_once(tmp_path: Path, pg_dsn: str) -> None:
    s = settings_for("postgres", tmp_path, pg_dsn, postgres_pool_max=24)
    clock = FixedClock(START)
    async with (running_ledger(s, clock=clock) as a, running_ledger(s, clock=clock) as b,
                webhook_receiver() as rx):  # fmt: skip
        k = await make_key(a.admin)
        budget = await a.admin.set_budget("team", k.team_id, unit="usd", period="monthly",
                                          hard_limit=30 * PER_CALL, alert_fractions=LINES)  # fmt: skip
        hook = await b.admin.add_webhook(rx.url("/h"), budget_id=budget.id)
        results = await asyncio.gather(*(_call((a, b)[i % 2], k.key_id) for i in range(48)))
        assert sum(results) == 30
        alerts = await b.admin.list_budget_alerts(budget.id)
        assert sorted((x.kind, x.fraction) for x in alerts) == sorted([("soft", f) for f in LINES] + [("hard", 1.0)])
        sent = await asyncio.gather(a.deps.alerts.deliverer.deliver_once(), b.deps.alerts.deliverer.deliver_once(),
                                    a.deps.alerts.deliverer.deliver_once(), b.deps.alerts.deliverer.deliver_once())
        assert sum(sent) == len(alerts) == len(rx.got)
        assert sorted(r.json["alert"]["id"] for r in rx.got) == sorted(x.id for x in alerts)
        assert all(r.signed_by(hook.secret) for r in rx.got)


async def test_unique_key_alone_stops_a_second_replica(tmp_path: Path, pg_dsn: str) -> None:
    s = settings_for("postgres", tmp_path, pg_dsn)
    clock = FixedClock(START)
    async with running_ledger(s, clock=clock) as a, running_ledger(s, clock=clock) as b:
        k = await make_key(a.admin)
        bud = await a.admin.set_budget("team", k.team_id, unit="usd", period="monthly", hard_limit=100)
        now = clock.now_us()
        (state,) = await a.deps.ledger.store.read(lambda: load_budgets([f"team:{k.team_id}"], None))

        async def raise_on(led: RunningLedger) -> sql_alerts.Alert | None:
            return await led.deps.ledger.store.write(
                lambda: sql_alerts.raise_alert(state, state.period_start, "soft", 5000, 50, "acme", now))

        out = await asyncio.gather(*(raise_on((a, b)[i % 2]) for i in range(10)))
        assert sum(x is not None for x in out) == 1
        assert len(await a.admin.list_budget_alerts(bud.id)) == 1


COMMITS = st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 1000), st.integers(0, 2000)), min_size=1,
                   max_size=12)  # fmt: skip


async def _property_case(deps: LedgerDeps, n: int, calls: list[tuple[int, int, int]], lines: list[int],
                         hard: int) -> None:  # fmt: skip
    team = await deps.admin.create_team("acme", f"t{n}")
    user = await deps.admin.create_user(team.id, f"u{n}@acme.com")
    key = (await deps.admin.create_key(KeySpec(user_id=user.id))).key
    spec = sql_admin.BudgetSpec("team", team.id, "usd", "monthly", hard, 0.8)
    b = await deps.admin.set_budget(spec, alert_fractions=tuple(x / sql_alerts.BP for x in lines))
    spent, expected = 0, {}
    for prompt, max_completion, completion in calls:
        try:
            r = await deps.ledger.authorize(AuthorizeInput(key.key_id, "local-small", "", prompt, max_completion))
        except ResourceExhausted:
            continue
        res = await deps.ledger.commit(CommitCall(r.reservation_id, key.key_id, prompt, completion))
        prev, spent = spent, spent + res.event.cost
        for kind, bp in sql_alerts.crossed(prev, spent, hard, sorted(set(lines))):
            expected[(kind, bp)] = spent
    assert spent <= hard
    got = await deps.alerts.alerts(roles.ADMIN_TOKEN, b.id, 1000)
    assert {(a.kind, a.fraction_bp): a.spent for a in got} == expected
    assert len(got) == len(expected)  # each once
    assert set(expected) == set(sql_alerts.reached(spent, hard, set(lines)))


def test_alerts_raised_are_the_lines_crossed_each_once(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    deps = loop.run_until_complete(build_deps(settings_for("sqlite", tmp_path), sweeper=False,
                                              clock=FixedClock(START)))  # fmt: skip
    loop.run_until_complete(deps.admin.create_org("acme"))
    n = itertools.count()

    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(COMMITS, st.lists(st.integers(1, sql_alerts.BP), min_size=1, max_size=5, unique=True),
           st.integers(1, 120_000))  # fmt: skip
    def prop(calls: list[tuple[int, int, int]], lines: list[int], hard: int) -> None:
        loop.run_until_complete(_property_case(deps, next(n), calls, lines, hard))

    try:
        prop()
    finally:
        loop.run_until_complete(close_deps(deps))
        loop.close()

