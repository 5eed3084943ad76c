"""Budget escrow (E1-E3 in docs/ledger.md): 2 ledger replicas on one PostgreSQL, random interleavings.

Hypothesis plays bursts of Authorize / Commit / Release / hang-ups spread over
both replicas (a Commit or Release often lands on the replica that did not
authorize), moves the shared FixedClock (holds expire, late commits), and
settles at random points. After every burst the database itself must show:
spent + central holds + slices <= limit for every budget, and within every
slice the hold rows use no more than the slice; at the end, after both
replicas hand their slices back and every hold has expired, spent equals the
sum of the charge events, every acknowledged commit is one event, and no hold
or slice is left.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from rationer.errors import FailedPrecondition, RationerError, ResourceExhausted
from rationer.platform.clock import FixedClock
from services.ledger.calls import CommitCall
from testsupport.ledger import RunningLedger, make_key, running_ledger, settings_for

T = TypeVar("T")
IN_PRICE, OUT_PRICE = 2_500_000_000, 10_000_000_000  # frontier


def cost(p: int, c: int) -> int:
    return -(-(p * IN_PRICE + c * OUT_PRICE) // 1_000_000)


@contextmanager
def _two_replicas(dsn: str, tmp: Path, c: FixedClock) -> Iterator[tuple[list[RunningLedger], Callable[[Any], Any]]]:
    """Two escrow ledgers on one schema, on their own loop thread so sync hypothesis examples drive them."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(120)  # type: ignore[arg-type]

    # Small slices (2 requests per refill), so refills and reclaims happen all the time.
    s = settings_for("postgres", tmp, dsn, escrow=True, escrow_slice_max_requests=2, escrow_slice_fraction=1.0,
                     reservation_ttl_s=60, max_reservation_ttl_s=120, db_timeout_s=30)  # fmt: skip
    stack = AsyncExitStack()

    async def enter() -> list[RunningLedger]:
        return [await stack.enter_async_context(running_ledger(s, clock=c)) for _ in range(2)]

    leds = run(enter())
    try:
        yield leds, run
    finally:
        run(stack.aclose())
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _check_e1(dsn: str, budget_ids: list[str]) -> None:
    with psycopg.connect(dsn) as conn:
        for bid in budget_ids:
            row = conn.execute(
                "SELECT b.hard_limit, b.spent, (SELECT COALESCE(SUM(amount), 0) FROM escrow_slices WHERE budget_id"
                " = b.id), (SELECT COALESCE(SUM(amount), 0) FROM holds WHERE budget_id = b.id) FROM budgets b"
                " WHERE b.id = %s", (bid,)).fetchone()  # fmt: skip
            assert row is not None
            limit, spent, slices, central = (int(x) for x in row)
            assert spent + slices + central <= limit, f"{bid}: {spent} + {slices} + {central} > {limit}"
        over = conn.execute(
            "SELECT s.budget_id, s.replica_id, s.amount, SUM(COALESCE(h.charge, h.amount)) FROM escrow_slices s"
            " JOIN escrow_holds h ON h.budget_id = s.budget_id AND h.replica_id = s.replica_id"
            " GROUP BY s.budget_id, s.replica_id, s.amount HAVING SUM(COALESCE(h.charge, h.amount)) > s.amount"
        ).fetchall()
        assert not over, f"slices used past their amount: {over}"


# One step: (op, replica that authorizes, replica that settles, prompt, completion, use factor %, wait s)
Step = tuple[str, int, int, int, int, int, int]
_step = st.tuples(st.sampled_from(["commit", "commit", "commit", "release", "hangup", "abandon"]),
                  st.integers(0, 1), st.integers(0, 1), st.integers(0, 800), st.integers(1, 800),
                  st.integers(0, 200), st.integers(0, 40))  # fmt: skip


async def _one(leds: list[RunningLedger], key_id: str, step: Step, i: int, acked: dict[str, int]) -> None:
    op, a, b, p, comp, use, _ = step
    call = leds[a].client.authorize(key_id, "frontier", prompt_tokens=p, max_completion_tokens=comp,
                                    request_id=f"r{i}")  # fmt: skip
    if op == "hangup":  # the caller goes away mid-Authorize: the hold may or may not exist, and must expire
        task = asyncio.ensure_future(call)
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return
    try:
        r = await call
    except ResourceExhausted:
        return
    if op == "abandon":  # never settled: expires
        return
    other = leds[b].client
    if op == "release":
        await other.release(r.reservation_id, key_id)
        return
    up, uc = p * use // 100, comp * use // 100  # up to twice the hold: above-hold usage is capped
    try:
        res = await other.commit(CommitCall(r.reservation_id, key_id, up, uc, bill_late=True))
    except FailedPrecondition:
        return
    again = await leds[a].client.commit(CommitCall(r.reservation_id, key_id, up, uc, bill_late=True))
    assert again.replayed and again.event.event_id == res.event.event_id  # a retry anywhere replays
    assert res.event.cost + res.event.overage == cost(up, uc)
    acked[r.reservation_id] = res.event.cost


async def _burst(leds: list[RunningLedger], c: FixedClock, key_id: str, steps: list[Step], start: int,
                 acked: dict[str, int], settle_at: int) -> None:  # fmt: skip
    # Concurrent groups of up to 4 steps, then the clock moves by the group's largest wait.
    for g in range(0, len(steps), 4):
        group = steps[g:g + 4]
        await asyncio.gather(*(_one(leds, key_id, s, start + g + j, acked) for j, s in enumerate(group)))
        c.advance(max(s[6] for s in group))
        if g // 4 == settle_at:
            for led in leds:
                assert led.deps.ledger.escrow is not None
                await led.deps.ledger.escrow.settle()


async def _final(leds: list[RunningLedger], c: FixedClock) -> None:
    c.advance(200)  # every hold has expired (max ttl 120 s)
    for led in leds:
        assert led.deps.ledger.escrow is not None
        await led.deps.ledger.escrow.settle(return_unused=True)
        await led.deps.ledger.sweep_once()


def test_two_escrow_replicas_never_overspend_and_count_every_commit_once(pg_dsn: str, tmp_path: Path) -> None:
    c = FixedClock(datetime(2031, 5, 14, 9, tzinfo=UTC))
    orgs = count()
    with _two_replicas(pg_dsn, tmp_path, c) as (leds, run):

        @hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(steps=st.lists(_step, min_size=1, max_size=16), usd=st.integers(cost(300, 300), 6 * cost(800, 800)),
               tokens=st.integers(500, 10_000), settle_at=st.integers(0, 3))  # fmt: skip
        def check(steps: list[Step], usd: int, tokens: int, settle_at: int) -> None:
            n = next(orgs)
            k = run(make_key(leds[0].admin, org=f"esc{n}"))
            kb = run(leds[0].admin.set_budget("key", k.key_id, unit="usd", period="lifetime", hard_limit=usd))
            ob = run(leds[0].admin.set_budget("org", k.org_id, unit="tokens", period="lifetime", hard_limit=tokens))
            acked: dict[str, int] = {}
            try:
                run(_burst(leds, c, k.key_id, steps, 0, acked, settle_at))
            except RationerError as exc:
                raise AssertionError(f"unexpected {exc.code}: {exc.message}") from exc
            _check_e1(pg_dsn, [kb.id, ob.id])
            run(_final(leds, c))
            _check_e1(pg_dsn, [kb.id, ob.id])
            _check_books(pg_dsn, k.key_id, kb.id, ob.id, acked)

        check()


def _check_books(dsn: str, key_id: str, usd_budget: str, tok_budget: str, acked: dict[str, int]) -> None:
    with psycopg.connect(dsn) as conn:
        events = conn.execute("SELECT reservation_id, cost, prompt_tokens + completion_tokens - overage_tokens"
                              " FROM events WHERE key_id = %s AND kind = 'charge'", (key_id,)).fetchall()  # fmt: skip
        spent: dict[str, int] = dict(conn.execute("SELECT id, spent FROM budgets WHERE id IN (%s, %s)",
                                  (usd_budget, tok_budget)).fetchall())  # fmt: skip
        left = conn.execute("SELECT COUNT(*) FROM escrow_holds h JOIN reservations r ON r.id = h.reservation_id"
                            " WHERE r.key_id = %s", (key_id,)).fetchone()  # fmt: skip
        slices = conn.execute("SELECT COUNT(*) FROM escrow_slices WHERE budget_id IN (%s, %s)",
                              (usd_budget, tok_budget)).fetchone()  # fmt: skip
    by_res = {r[0]: int(r[1]) for r in events}
    assert len(by_res) == len(events), "a reservation was charged twice"
    # Every acknowledged commit is exactly one event, with the cost acknowledged.
    assert {r: by_res.get(r) for r in acked} == acked
    assert spent[usd_budget] == sum(int(r[1]) for r in events)
    assert spent[tok_budget] == sum(int(r[2]) for r in events)
    assert left is not None and slices is not None and left[0] == 0 and slices[0] == 0


async def test_a_dead_replicas_slices_are_reclaimed_then_reaped_and_its_charges_kept(
    pg_dsn: str, tmp_path: Path
) -> None:
    """E3: a replica that never settles again loses no money and strands none for good.

    The "dead" replica is a real Escrow on the real database that is simply
    never run again after its Authorize (no settle loop, no close).
    """
    from services.ledger.escrow import Escrow
    from services.ledger.models import AuthorizeInput, Reservation

    c = FixedClock(datetime(2031, 5, 14, 9, tzinfo=UTC))
    s = settings_for("postgres", tmp_path, pg_dsn, escrow=True, escrow_slice_max_requests=100,
                     escrow_slice_fraction=1.0, escrow_settle_interval_s=3600)  # fmt: skip
    async with running_ledger(s, clock=c) as led:
        ledger = led.deps.ledger
        assert ledger.escrow is not None
        k = await make_key(led.admin)
        one = cost(100, 100)
        await led.admin.set_budget("org", k.org_id, unit="usd", period="lifetime", hard_limit=10 * one)
        dead = Escrow(ledger.store, s, c, "dead-1")
        r = await dead.authorize(AuthorizeInput(k.key_id, "frontier", prompt_tokens=100, max_completion_tokens=100),
                                 60_000_000, await ledger.key(k.key_id))  # fmt: skip
        assert isinstance(r, Reservation)
        # It took (nearly) the whole budget as its slice, then died. Its hold is
        # committed through the live replica, and the live one reclaims the rest.
        await led.client.commit(CommitCall(r.reservation_id, k.key_id, 100, 100))
        for i in range(9):
            await led.client.authorize(k.key_id, "frontier", prompt_tokens=100, max_completion_tokens=100,
                                       request_id=f"live-{i}")  # fmt: skip
        try:
            await led.client.authorize(k.key_id, "frontier", prompt_tokens=100, max_completion_tokens=100)
            raise AssertionError("an 11th request fitted a budget for 10")
        except ResourceExhausted:
            pass
        (b,) = await led.admin.list_budgets("org", k.org_id)
        assert b.spent == one and b.held == 9 * one  # the dead replica's charge is counted already
        c.advance(s.reservation_ttl_s + s.escrow_slice_grace_s + 1)  # every hold and the dead slice expired
        await ledger.sweep_once()
        await ledger.escrow.settle(return_unused=True)
        with psycopg.connect(pg_dsn) as conn:
            left = conn.execute("SELECT replica_id FROM escrow_slices").fetchall()
            spent = conn.execute("SELECT spent FROM budgets WHERE scope_key = %s", (f"org:{k.org_id}",)).fetchone()
        assert left == [] and spent is not None and int(spent[0]) == one  # folded into spent by the reaper
