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
