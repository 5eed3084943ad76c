"""Reservations, charges, budgets, prices and usage, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from rationer.api.ledger.v1 import ledger_pb2 as pb
from rationer.api.ledger.v1 import ledger_pb2_grpc as pb_grpc
from rationer.errors import FailedPrecondition, NotFound, PermissionDenied, ResourceExhausted
from rationer.platform.client import internal_channel
from services.ledger.calls import CommitCall
from services.ledger.client import LedgerClient
from services.ledger.money import period_bounds
from services.ledger.settings import LedgerSettings
from services.ledger.sql import data as sql_data
from services.ledger.sql.common import load_budgets
from testsupport.ledger import ADMIN_TOKEN, cache_hit, make_key, running_ledger, settings_for

# frontier default price: $2.50/M input, $10/M output (nano-USD per million)
IN_PRICE, OUT_PRICE = 2_500_000_000, 10_000_000_000


def cost(p: int, c: int, inp: int = IN_PRICE, out: int = OUT_PRICE) -> int:
    return -(-(p * inp + c * out) // 1_000_000)


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerSettings:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else ""
    return settings_for(request.param, tmp_path, dsn)


async def test_authorize_commit_charges_true_cost_once(settings: LedgerSettings) -> None:
    async with running_ledger(settings) as led:
        k = await make_key(led.admin)
        await led.admin.set_budget("team", k.team_id, unit="usd", period="monthly", hard_limit=10**9)
        res = await led.client.authorize(k.key_id, "frontier", prompt_tokens=1000, max_completion_tokens=500,
                                         request_id="req-1")
        assert res.held_nano_usd == cost(1000, 500)
        room = await led.client.headroom(k.key_id)
        assert room.budgets[0].remaining == 10**9 - cost(1000, 500)
        first = await led.client.commit(CommitCall(res.reservation_id, k.key_id, 900, 123, latency_ms=42))
        assert not first.replayed
        assert first.event.cost == cost(900, 123)
        assert first.event.counterfactual_cost == cost(900, 123)  # frontier is the reference
        again = await led.client.commit(CommitCall(res.reservation_id, k.key_id, 900, 123))
        assert again.replayed and again.event.event_id == first.event.event_id
        budgets = await led.admin.list_budgets("team", k.team_id)
        assert budgets[0].spent == cost(900, 123) and budgets[0].held == 0
        # a retried Authorize with the same request id returns the same reservation
        replay = await led.client.authorize(k.key_id, "frontier", prompt_tokens=1000,
                                            max_completion_tokens=500, request_id="req-1")
        assert replay.reservation_id == res.reservation_id and replay.replayed and not res.replayed
        charges = await led.admin.list_events(kind="charge")
        assert len(charges) == 1


async def test_release_frees_hold_and_blocks_commit(settings: LedgerSettings) -> None:
    async with running_ledger(settings) as led:
        k = await make_key(led.admin)
        limit = cost(1000, 1000)
        await led.admin.set_budget("key", k.key_id, unit="usd", period="lifetime", hard_limit=limit)
        res = await led.client.authorize(k.key_id, "frontier", prompt_tokens=1000, max_completion_tokens=1000)
        with pytest.raises(ResourceExhausted) as exc:
            await led.client.authorize(k.key_id, "frontier", prompt_tokens=1, max_completion_tokens=1)
        assert exc.value.limit_id == f"budget:key:{k.key_id}:usd:lifetime"
        assert await led.client.release(res.reservation_id, k.key_id, "client went away")
        assert not await led.client.release(res.reservation_id, k.key_id)
        with pytest.raises(FailedPrecondition, match="released"):
            await led.client.commit(CommitCall(res.reservation_id, k.key_id, 10, 10))
        # the freed hold is available again
        res2 = await led.client.authorize(k.key_id, "frontier", prompt_tokens=1000, max_completion_tokens=1000)
        await led.client.commit(CommitCall(res2.reservation_id, k.key_id, 1000, 1000))
        with pytest.raises(FailedPrecondition, match="already committed"):
            await led.client.release(res2.reservation_id, k.key_id)


async def test_expired_hold_never_counts_even_before_sweep(settings: LedgerSettings) -> None:
    async with running_ledger(settings, sweeper=False) as led:
        k = await make_key(led.admin)
        limit = cost(1000, 1000)
        await led.admin.set_budget("org", k.org_id, unit="usd", period="daily", hard_limit=limit)
        leaked = await led.client.authorize(k.key_id, "frontier", prompt_tokens=1000,
                                            max_completion_tokens=1000, ttl_s=0.3)
        with pytest.raises(ResourceExhausted):
            await led.client.authorize(k.key_id, "frontier", prompt_tokens=1000, max_completion_tokens=1000)
        await asyncio.sleep(0.5)
        # no sweeper runs here: the expired hold stops counting by itself
        fresh = await led.client.authorize(k.key_id, "frontier", prompt_tokens=1000, max_completion_tokens=1000)
        with pytest.raises(FailedPrecondition, match=r"expired at .* set bill_late"):
            await led.client.commit(CommitCall(leaked.reservation_id, k.key_id, 1000, 1000))
        # Releasing the expired hold frees nothing, but it is the caller's word
        # that nothing was used: a later Commit is refused.
        assert not await led.client.release(leaked.reservation_id, k.key_id)
        with pytest.raises(FailedPrecondition, match="released"):
            await led.client.commit(CommitCall(leaked.reservation_id, k.key_id, 1000, 1000))
        await led.client.commit(CommitCall(fresh.reservation_id, k.key_id, 1000, 1000))
        (b,) = await led.admin.list_budgets("org", k.org_id)
        assert b.spent == limit and b.held == 0


async def test_late_commit_after_expiry_is_billed_once(settings: LedgerSettings) -> None:
    # The model answered but the commit came after the hold's TTL (a long
    # ledger outage, or a router replaying its journal after a crash): the
    # provider still bills us, so with bill_late the ledger does too, once.
    async with running_ledger(settings, sweeper=False) as led:
        k = await make_key(led.admin)
        limit = cost(1000, 1000)
        await led.admin.set_budget("org", k.org_id, unit="usd", period="daily", hard_limit=limit)
        late = await led.client.authorize(k.key_id, "frontier", prompt_tokens=1000,
                                          max_completion_tokens=1000, ttl_s=0.3)  # fmt: skip
        await asyncio.sleep(0.5)
        other = await led.client.authorize(k.key_id, "frontier", prompt_tokens=1000, max_completion_tokens=1000)
        await led.client.commit(CommitCall(other.reservation_id, k.key_id, 1000, 1000))
        # The sweeper's marking does not change the outcome.
        await led.deps.ledger.sweep_once()
        with pytest.raises(FailedPrecondition, match="expired"):
            await led.client.commit(CommitCall(late.reservation_id, k.key_id, 1000, 1000))
        first = await led.client.commit(CommitCall(late.reservation_id, k.key_id, 1000, 1000, bill_late=True))
        again = await led.client.commit(CommitCall(late.reservation_id, k.key_id, 1000, 1000, bill_late=True))
        assert (first.replayed, again.replayed) == (False, True)
        assert again.event.event_id == first.event.event_id
        assert first.event.detail.startswith("late: hold expired at")
        # The budget is full: the late charge cannot take it past its hard
        # limit, so its cost is recorded as overage instead of hidden.
        assert (first.event.cost, first.event.overage) == (0, limit)
        assert f"not charged: budget:org:{k.org_id}:usd:daily is at its hard limit" in first.event.detail
        (b,) = await led.admin.list_budgets("org", k.org_id)
        assert b.spent == limit and b.held == 0
        charges = [e for e in await led.admin.list_events(kind="charge") if e.key_id == k.key_id]
        assert len(charges) == 2 and sum(e.cost.nano_usd for e in charges) == b.spent
        async with LedgerClient(led.target, bearer=ADMIN_TOKEN) as admin_reader:
            (row,) = await admin_reader.usage(scope=("org", k.org_id))
        assert (row.cost, row.overage) == (limit, limit)


async def test_hierarchy_denial_names_limit_and_reset(settings: LedgerSettings) -> None:
    async with running_ledger(settings) as led:
        k = await make_key(led.admin)
        await led.admin.set_budget("key", k.key_id, unit="usd", period="monthly", hard_limit=10**12)
        await led.admin.set_budget("org", k.org_id, unit="tokens", period="daily", hard_limit=5000,
                                   soft_fraction=0.5)
        ok = await led.client.authorize(k.key_id, "local-small", prompt_tokens=2000, max_completion_tokens=1000)
        assert ok.soft_alerts == (f"budget:org:{k.org_id}:tokens:daily",)
        assert await led.admin.list_events(kind="soft_alert")
        stub = pb_grpc.LedgerServiceStub(internal_channel(led.target, led.service_token))
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.Authorize(pb.AuthorizeRequest(key_id=k.key_id, tier="local-small",
                                                     estimated_prompt_tokens=1500, max_completion_tokens=600))
        err = exc.value
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"budget:org:{k.org_id}:tokens:daily" in (err.details() or "")
        trailers = dict(err.trailing_metadata() or ())
        assert trailers["x-rationer-limit"] == f"budget:org:{k.org_id}:tokens:daily"
        assert trailers["x-rationer-resets-at"].endswith("00:00:00+00:00")
        assert float(trailers["retry-after"]) > 0
        assert len(await led.admin.list_events(kind="denied")) == 1


async def test_tiers_prices_versions_and_cache_hits(settings: LedgerSettings) -> None:
    async with running_ledger(settings) as led:
        k = await make_key(led.admin, allowed_tiers=["local-small", "local-large"])
        with pytest.raises(PermissionDenied, match="frontier"):
            await led.client.authorize(k.key_id, "frontier", prompt_tokens=1, max_completion_tokens=1)
        open_key = await make_key(led.admin, email="bob@acme.com")
        with pytest.raises(NotFound, match="unknown tier"):
            await led.client.authorize(open_key.key_id, "gpt-9", prompt_tokens=1, max_completion_tokens=1)
        prices = {p.tier: p for p in await led.client.list_prices()}
        assert prices["frontier"].is_reference and prices["local-small"].version == 1
        small = prices["local-small"]
        r1 = await led.client.authorize(k.key_id, "local-small", prompt_tokens=10, max_completion_tokens=10)
        await led.admin.set_price("local-small", small.model, small.input_per_million * 3,
                                  small.output_per_million * 3)
        r2 = await led.client.authorize(k.key_id, "local-small", prompt_tokens=10, max_completion_tokens=10)
        e1 = (await led.client.commit(CommitCall(r1.reservation_id, k.key_id, 1000, 1000))).event
        e2 = (await led.client.commit(CommitCall(r2.reservation_id, k.key_id, 1000, 1000))).event
        assert (e1.price_version, e2.price_version) == (1, 2)
        assert e1.cost == cost(1000, 1000, small.input_per_million, small.output_per_million)
        assert e2.cost == cost(1000, 1000, small.input_per_million * 3, small.output_per_million * 3)
        assert e1.counterfactual_cost == cost(1000, 1000)
        hit = await led.client.record_cache_hit(cache_hit(k.key_id, "rq-cache-1", tier="frontier", model="gpt-4o",
                                                prompt_tokens=400, completion_tokens=200, project="web"))
        assert hit.cost == 0 and hit.cache_hit and hit.counterfactual_cost == cost(400, 200)
        same = await led.client.record_cache_hit(cache_hit(k.key_id, "rq-cache-1", tier="frontier",
                                                 prompt_tokens=400, completion_tokens=200))
        assert same.event_id == hit.event_id
        async with LedgerClient(led.target, bearer=k.secret) as as_key:
            rows = await as_key.usage(group_by=["tier"])  # a key sees its own org
            with pytest.raises(PermissionDenied):
                await as_key.usage(scope=("org", "other-org"))
        by_tier = {r.group["tier"]: r for r in rows}
        assert by_tier["local-small"].requests == 2 and by_tier["local-small"].cost == e1.cost + e2.cost
        assert by_tier["frontier"].cache_hits == 1 and by_tier["frontier"].savings == cost(400, 200)
        events = await led.admin.list_events()
        total = sum(e.cost.nano_usd for e in events if e.kind in ("charge", "cache_hit"))
        assert total == sum(r.cost for r in rows)


async def test_commits_out_of_clock_order_at_midnight_lose_nothing(settings: LedgerSettings) -> None:
    # Two commits straddle midnight but reach the database in the opposite
    # order (two PostgreSQL connections, or two replicas, can do that). The
    # later one must not roll the budget back to the day that just ended.
    async with running_ledger(settings) as led:
        k = await make_key(led.admin)
        await led.admin.set_budget("key", k.key_id, unit="tokens", period="daily", hard_limit=10**9)
        late_day = await led.client.authorize(k.key_id, "local-small", prompt_tokens=100, max_completion_tokens=100)
        new_day = await led.client.authorize(k.key_id, "local-small", prompt_tokens=100, max_completion_tokens=100)
        _, midnight = period_bounds("daily", led.deps.ledger.now())
        store = led.deps.ledger.store

        def args(r: Any) -> CommitCall:
            return CommitCall(r.reservation_id, k.key_id, 100, 100, bill_late=True)

        await store.write(lambda: sql_data.commit(args(new_day), midnight + 5_000, store.dialect))
        await store.write(lambda: sql_data.commit(args(late_day), midnight - 5_000, store.dialect))
        (b,) = await store.read(lambda: load_budgets([f"key:{k.key_id}"], None))
        # Both charges count in the new day: the late one errs towards counting.
        assert b.spent(midnight + 1_000_000) == 400


async def test_commit_cannot_switch_to_a_disallowed_tier_and_marks_usage_over_the_hold(
    settings: LedgerSettings,
) -> None:
    async with running_ledger(settings) as led:
        k = await make_key(led.admin, allowed_tiers=["local-small"])
        res = await led.client.authorize(k.key_id, "local-small", prompt_tokens=10, max_completion_tokens=10)
        with pytest.raises(PermissionDenied, match="may not use tier 'frontier'"):
            await led.client.commit(CommitCall(res.reservation_id, k.key_id, 10, 10, tier="frontier"))
        # The true usage beat the estimate: charged (the call happened) and marked.
        done = await led.client.commit(CommitCall(res.reservation_id, k.key_id, 10, 500))
        assert done.event.completion_tokens == 500 and done.event.cost > res.held_nano_usd
        assert "over hold by $" in done.event.detail


async def test_prompt_cache_tokens_are_priced_at_the_price_rows_cache_rates(settings: LedgerSettings) -> None:
    async with running_ledger(settings) as led:
        k = await make_key(led.admin)
        row = await led.admin.set_price("cached-tier", "m", 3_000_000_000, 15_000_000_000,
                                        cache_read_per_million=300_000_000,
                                        cache_creation_per_million=3_750_000_000)  # fmt: skip
        assert row.cache_read_per_million.nano_usd == 300_000_000 and row.HasField("cache_creation_per_million")
        plain = await led.admin.set_price("plain-tier", "m", 3_000_000_000, 15_000_000_000)
        assert not plain.HasField("cache_read_per_million")  # unset: the input price
        prices = {p.tier: p for p in await led.client.list_prices()}
        assert prices["cached-tier"].cache_creation_per_million == 3_750_000_000
        assert prices["plain-tier"].cache_read_per_million is None
        charged = {}
        for tier in ("cached-tier", "plain-tier"):
            res = await led.client.authorize(k.key_id, tier, prompt_tokens=1000, max_completion_tokens=100)
            done = await led.client.commit(CommitCall(res.reservation_id, k.key_id, 1000, 100,
                                                      cache_read_tokens=600, cache_creation_tokens=300))  # fmt: skip
            charged[tier] = done.event.cost
        read, write, plain_in, out = 600 * 300, 300 * 3750, 100 * 3000, 100 * 15000  # nano-USD per token x tokens
        assert charged["cached-tier"] == read + write + plain_in + out
        assert charged["plain-tier"] == 1000 * 3000 + out
        res = await led.client.authorize(k.key_id, "cached-tier", prompt_tokens=10, max_completion_tokens=1)
        with pytest.raises(Exception, match="parts of"):
            await led.client.commit(CommitCall(res.reservation_id, k.key_id, 10, 1, cache_read_tokens=11))


async def test_prices_set_cli_takes_the_cache_rates(tmp_path: Path) -> None:
    from services.ledger.cli.ops import set_price

    async with running_ledger(settings_for("sqlite", tmp_path)) as led:
        line = await set_price(led.target, ADMIN_TOKEN, "claude", "c", 3.0, 15.0, False, (0.3, None))
        assert "cache read $0.300000/M" in line and "cache write" not in line
        (row,) = [p for p in await led.client.list_prices() if p.tier == "claude"]
        assert (row.cache_read_per_million, row.cache_creation_per_million) == (300_000_000, None)
