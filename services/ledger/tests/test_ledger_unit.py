"""``Ledger`` against fake ports (``testsupport.ledger_fakes``): every money path in milliseconds.

The integration tests (tests/integration/test_ledger_*.py) run the same rules
through gRPC against SQLite files and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from rationer.errors import AlreadyExists, FailedPrecondition, ResourceExhausted
from rationer.platform.clock import FixedClock
from services.ledger.admin import KeySpec, LedgerAdmin
from services.ledger.calls import CacheHitCall, CommitCall
from services.ledger.ledger import Ledger
from services.ledger.models import AuthorizeInput, RateLimit
from services.ledger.settings import LedgerSettings
from services.ledger.sql.admin import BudgetSpec
from testsupport.ledger_fakes import MemoryStore, RecordingLimiter

NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
# gpt-4o list price (the default frontier tier): $2.50/M in, $10/M out, in nano-USD per token.
IN, OUT = 2_500, 10_000


@dataclass
class Books:
    ledger: Ledger
    admin: LedgerAdmin
    store: MemoryStore
    limiter: RecordingLimiter
    clock: FixedClock
    key_id: str
    team_id: str

    async def budget(self, usd_nano: int, scope: str = "key") -> None:
        scope_id = self.key_id if scope == "key" else self.team_id
        await self.admin.set_budget(BudgetSpec(scope, scope_id, "usd", "monthly", usd_nano, 0.8))

    async def hold(self, prompt: int = 100, completion: int = 100, request_id: str = "", ttl_s: float = 0) -> str:
        r = await self.ledger.authorize(AuthorizeInput(self.key_id, "frontier", prompt_tokens=prompt,
                                                       max_completion_tokens=completion, request_id=request_id,
                                                       ttl_s=ttl_s))  # fmt: skip
        return r.reservation_id


@pytest.fixture
async def books() -> AsyncIterator[Books]:
    store, limiter, clock = MemoryStore(), RecordingLimiter(), FixedClock(NOON)
    settings = LedgerSettings.model_validate({"reservation_ttl_s": 60})
    ledger = Ledger(store, limiter, settings, clock)
    admin = LedgerAdmin(ledger, settings)
    await store.start()
    await admin.seed_prices()
    org = await admin.create_org("acme")
    team = await admin.create_team(org.id, "eng")
    user = await admin.create_user(team.id, "a@acme.com")
    key = await admin.create_key(KeySpec(user_id=user.id))
    yield Books(ledger, admin, store, limiter, clock, key.key.key_id, team.id)
    await store.close()


async def test_authorize_holds_the_worst_case_and_commit_charges_the_usage(books: Books) -> None:
    await books.budget(10**12)
    res = await books.ledger.authorize(AuthorizeInput(books.key_id, "frontier", prompt_tokens=100,
                                                      max_completion_tokens=50))  # fmt: skip
    assert res.held_nano_usd == 100 * IN + 50 * OUT
    assert res.expires_at_us == books.clock.now_us() + 60_000_000
    done = await books.ledger.commit(CommitCall(res.reservation_id, books.key_id, 100, 20, latency_ms=7))
    assert not done.replayed
    assert (done.event.kind, done.event.cost) == ("charge", 100 * IN + 20 * OUT)
    assert (done.event.prompt_tokens, done.event.completion_tokens, done.event.latency_ms) == (100, 20, 7)
    assert done.unused_tokens == 30
    (budget,) = await books.admin.list_budgets("key", books.key_id)
    assert (budget.spent, budget.held) == (100 * IN + 20 * OUT, 0)


async def test_commit_is_idempotent(books: Books) -> None:
    rid = await books.hold()
    first = await books.ledger.commit(CommitCall(rid, books.key_id, 10, 10))
    again = await books.ledger.commit(CommitCall(rid, books.key_id, 10, 10))
    assert again.replayed and again.event == first.event
    assert [e.kind for e in await books.admin.list_events(None, None, "charge", 10)] == ["charge"]


async def test_authorize_with_a_request_id_replays_its_hold(books: Books) -> None:
    first = await books.hold(request_id="req-1")
    assert await books.hold(request_id="req-1") == first


async def test_release_frees_the_hold_and_a_later_commit_is_refused(books: Books) -> None:
    await books.budget(10**12)
    rid = await books.hold()
    assert await books.ledger.release(rid, books.key_id, "no answer")
    assert not await books.ledger.release(rid, books.key_id)  # already released
    (budget,) = await books.admin.list_budgets("key", books.key_id)
    assert (budget.spent, budget.held) == (0, 0)
    with pytest.raises(FailedPrecondition, match="released"):
        await books.ledger.commit(CommitCall(rid, books.key_id, 1, 1))


async def test_a_hold_past_the_hard_limit_is_denied(books: Books) -> None:
    await books.budget(100 * IN + 100 * OUT)  # room for exactly one hold
    await books.admin.set_rate_limit(RateLimit("key", books.key_id, 1000, 0))
    await books.hold()
    with pytest.raises(ResourceExhausted) as denied:
        await books.hold()
    assert denied.value.limit_id == f"budget:key:{books.key_id}:usd:monthly"
    assert "would exceed the hard limit" in denied.value.message
    assert [e.kind for e in await books.admin.list_events(None, None, "denied", 10)] == ["denied"]
    # The denied request was not admitted: its rate-limit use is given back.
    assert len(books.limiter.acquired) == 2
    assert books.limiter.refunded == books.limiter.acquired[1:]


async def test_usage_over_the_hold_is_capped_at_the_limit_as_overage(books: Books) -> None:
    await books.budget(100 * IN + 100 * OUT)
    rid = await books.hold()
    done = await books.ledger.commit(CommitCall(rid, books.key_id, 100, 500))
    assert done.event.cost == 100 * IN + 100 * OUT  # what the budget had room for
    assert done.event.overage == 400 * OUT
    assert "overage" in done.event.detail
    (budget,) = await books.admin.list_budgets("key", books.key_id)
    assert budget.spent == budget.hard_limit


async def test_an_expired_hold_is_refused_unless_billed_late(books: Books) -> None:
    rid = await books.hold(ttl_s=5)
    books.clock.advance(6)
    with pytest.raises(FailedPrecondition, match="expired"):
        await books.ledger.commit(CommitCall(rid, books.key_id, 10, 10))
    late = await books.ledger.commit(CommitCall(rid, books.key_id, 10, 10, bill_late=True))
    assert late.event.cost == 10 * IN + 10 * OUT
    assert "late: hold expired" in late.event.detail


async def test_the_sweeper_frees_expired_holds(books: Books) -> None:
    await books.budget(10**12)
    await books.hold(ttl_s=5)
    books.clock.advance(6)
    assert await books.ledger.sweep_once() == 1
    assert await books.ledger.sweep_once() == 0


async def test_rate_limit_denial_names_the_limit_and_when_to_retry(books: Books) -> None:
    await books.admin.set_rate_limit(RateLimit("key", books.key_id, 10, 0))
    books.limiter.deny = frozenset({f"rpm:key:{books.key_id}"})
    with pytest.raises(ResourceExhausted) as denied:
        await books.hold()
    assert denied.value.limit_id == f"rpm:key:{books.key_id}"
    assert denied.value.retry_after_s == 12.5


async def test_cache_hit_is_recorded_once_per_record(books: Books) -> None:
    hit = CacheHitCall(books.key_id, "req-9", "", "frontier", "gpt-4o", 100, 50, record_id="rec-1")
    ev, replayed = await books.ledger.record_cache_hit(hit)
    assert (ev.kind, ev.cost, ev.cache_hit, replayed) == ("cache_hit", 0, True, False)
    assert ev.counterfactual_cost == 100 * IN + 50 * OUT  # what the frontier would have cost
    again, replayed = await books.ledger.record_cache_hit(hit)
    assert replayed and again == ev
    with pytest.raises(AlreadyExists):
        await books.ledger.record_cache_hit(CacheHitCall(books.key_id, "req-9", "", "frontier", "gpt-4o", 1, 1,
                                                         record_id="rec-2"))  # fmt: skip


# ---- savings against the router's reference (docs/ledger.md, "Savings") ----


async def _local_commit(books: Books, **reference: object) -> int:
    res = await books.ledger.authorize(AuthorizeInput(books.key_id, "local-small", prompt_tokens=100,
                                                      max_completion_tokens=50))  # fmt: skip
    done = await books.ledger.commit(CommitCall(res.reservation_id, books.key_id, 100, 20, **reference))  # type: ignore[arg-type]
    assert done.event.cost == 100 * 10 + 20 * 20  # local-small: $0.01/M in, $0.02/M out
    return done.event.counterfactual_cost


async def test_the_counterfactual_is_the_named_reference_on_its_own_usage(books: Books) -> None:
    assert await _local_commit(books, reference_tier="frontier", reference_prompt_tokens=130,
                               reference_completion_tokens=20) == 130 * IN + 20 * OUT  # fmt: skip
    # No reference, an unpriced one, or one cheaper than the tier that served: no savings claimed.
    for ref in ("", "no-such-tier", "embeddings"):
        assert await _local_commit(books, reference_tier=ref, reference_prompt_tokens=130) == 100 * 10 + 20 * 20
    # An older router names none: the is_reference price (frontier) on the call's own usage.
    assert await _local_commit(books) == 100 * IN + 20 * OUT


async def test_a_hit_with_no_reference_saves_nothing(books: Books) -> None:
    hit = CacheHitCall(books.key_id, "req-r", "", "local-small", "m", 100, 50, reference_tier="")
    ev, _ = await books.ledger.record_cache_hit(hit)
    assert (ev.cost, ev.counterfactual_cost) == (0, 0)
