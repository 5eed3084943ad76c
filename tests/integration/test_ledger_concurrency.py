"""No overspend under concurrency: 200 simultaneous requests, room for exactly 50."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rationer.errors import ResourceExhausted
from services.ledger.calls import CommitCall
from services.ledger.client import LedgerClient
from testsupport.ledger import make_key, running_ledger, settings_for

PROMPT, COMPLETION = 1000, 1000
PER_REQUEST = -(-(PROMPT * 2_500_000_000 + COMPLETION * 10_000_000_000) // 1_000_000)  # frontier


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_200_concurrent_requests_never_overspend(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else ""
    # A generous pool wait: 200 calls queue for 12 connections on a machine
    # the rest of the suite is also loading (the test is about money, not speed).
    async with running_ledger(settings_for(backend, tmp_path, dsn, postgres_pool_max=12, db_timeout_s=30)) as led:
        k = await make_key(led.admin)
        limit = 50 * PER_REQUEST + PER_REQUEST // 2  # fits 50 requests, not 51
        await led.admin.set_budget("team", k.team_id, unit="usd", period="monthly", hard_limit=limit)
        # separate channels so the calls really arrive concurrently on several connections
        clients = [LedgerClient(led.target, timeout_s=60, service_token=led.service_token) for _ in range(8)]

        async def one(i: int) -> bool:
            c = clients[i % len(clients)]
            try:
                res = await c.authorize(k.key_id, "frontier", prompt_tokens=PROMPT,
                                        max_completion_tokens=COMPLETION, request_id=f"req-{i}")
            except ResourceExhausted as exc:
                assert exc.limit_id == f"budget:team:{k.team_id}:usd:monthly"
                return False
            await c.commit(CommitCall(res.reservation_id, k.key_id, PROMPT, COMPLETION))
            return True

        try:
            results = await asyncio.gather(*(one(i) for i in range(200)))
        finally:
            for c in clients:
                await c.close()
        assert sum(results) == 50
        (budget,) = await led.admin.list_budgets("team", k.team_id)
        assert budget.spent == 50 * PER_REQUEST <= limit
        assert budget.held == 0
        charges = await led.admin.list_events(kind="charge")
        assert len(charges) == 50 and sum(e.cost.nano_usd for e in charges) == budget.spent
        assert len(await led.admin.list_events(kind="denied")) == 150


async def test_200_requests_over_two_routers_and_two_escrow_replicas_never_overspend(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Escrow (E1): the same room for exactly 50, now on 2 ledger replicas sharing one PostgreSQL.

    Two "routers" (independent client sets) spread Authorize round robin over
    both replicas, and every other Commit lands on the replica that did not
    authorize it. Exactly 50 succeed, whatever slices each replica took.
    """
    s = settings_for("postgres", tmp_path, pg_dsn, postgres_pool_max=12, db_timeout_s=30, escrow=True,
                     escrow_slice_max_requests=8)  # fmt: skip
    async with running_ledger(s) as one, running_ledger(s) as two:
        assert one.deps.ledger.escrow is not None and two.deps.ledger.escrow is not None
        k = await make_key(one.admin)
        limit = 50 * PER_REQUEST + PER_REQUEST // 2
        await one.admin.set_budget("org", k.org_id, unit="usd", period="monthly", hard_limit=limit)
        await one.admin.set_budget("team", k.team_id, unit="usd", period="monthly", hard_limit=10**15)
        targets = [one.target, two.target]
        routers = [[LedgerClient(t, timeout_s=60, service_token=one.service_token) for t in targets * 2]
                   for _ in range(2)]  # fmt: skip

        async def one_call(i: int) -> bool:
            router = routers[i % 2]
            first = router[(i // 2) % len(router)]
            other = router[((i // 2) + 1) % len(router)] if i % 4 < 2 else first
            try:
                res = await first.authorize(k.key_id, "frontier", prompt_tokens=PROMPT,
                                            max_completion_tokens=COMPLETION, request_id=f"req-{i}")  # fmt: skip
            except ResourceExhausted as exc:
                assert exc.limit_id == f"budget:org:{k.org_id}:usd:monthly"
                return False
            await other.commit(CommitCall(res.reservation_id, k.key_id, PROMPT, COMPLETION))
            return True

        try:
            results = await asyncio.gather(*(one_call(i) for i in range(200)))
        finally:
            for router in routers:
                for c in router:
                    await c.close()
        assert sum(results) == 50
        for led in (one, two):  # fold the charges and hand back what is unused
            assert led.deps.ledger.escrow is not None
            await led.deps.ledger.escrow.settle(return_unused=True)
        (budget,) = await one.admin.list_budgets("org", k.org_id)
        assert budget.spent == 50 * PER_REQUEST <= limit
        assert budget.held == 0
        charges = await one.admin.list_events(kind="charge")
        assert len(charges) == 50 and sum(e.cost.nano_usd for e in charges) == budget.spent
        assert len(await one.admin.list_events(kind="denied")) == 150
