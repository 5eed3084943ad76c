"""Project-bound keys, request ids scoped to the key, one event per served cache hit.

On SQLite and PostgreSQL, over real gRPC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from rationer.errors import AlreadyExists, PermissionDenied, ResourceExhausted
from rationer.platform.clock import FixedClock
from services.ledger.calls import CommitCall
from services.ledger.client import LedgerClient
from services.ledger.settings import LedgerSettings
from testsupport.ledger import ADMIN_TOKEN, cache_hit, make_key, running_ledger, settings_for


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerSettings:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else ""
    return settings_for(request.param, tmp_path, dsn)


async def test_a_project_bound_key_cannot_skip_its_project_budget(settings: LedgerSettings) -> None:
    async with running_ledger(settings) as led:
        c = led.client
        k = await make_key(led.admin, project="web")
        await led.admin.set_budget("project", f"{k.org_id}/web", unit="usd", period="lifetime", hard_limit=1)
        assert (await c.authenticate(k.secret)).project == "web"
        assert [x.project for x in await led.admin.list_keys(k.org_id)] == ["web"]
        limit = f"budget:project:{k.org_id}/web:usd:lifetime"
        for tag in ("", "web"):  # no tag means the key's project
            with pytest.raises(ResourceExhausted) as denied:
                await c.authorize(k.key_id, "local-small", prompt_tokens=10, max_completion_tokens=10, project=tag)
            assert denied.value.limit_id == limit
        with pytest.raises(PermissionDenied, match="bound to project 'web' and may not send project 'mobile'"):
            await c.authorize(k.key_id, "local-small", prompt_tokens=10, max_completion_tokens=10, project="mobile")
        with pytest.raises(PermissionDenied, match="bound to project"):
            await c.headroom(k.key_id, "mobile")
        assert [h.budget_id for h in (await c.headroom(k.key_id)).budgets] == [limit]
        with pytest.raises(PermissionDenied, match="bound to project"):
            await c.record_cache_hit(cache_hit(k.key_id, "hit-m", project="mobile", record_id="a1"))
        hit = await c.record_cache_hit(cache_hit(k.key_id, "hit-w", record_id="a2"))
        assert hit.project == "web"
        # An unbound key's tag is taken as given, and only when given.
        free = await make_key(led.admin, email="bob@acme.com")
        await led.admin.set_budget("project", f"{free.org_id}/api", unit="usd", period="lifetime", hard_limit=1)
        with pytest.raises(ResourceExhausted):
            await c.authorize(free.key_id, "local-small", prompt_tokens=10, max_completion_tokens=10, project="api")
        await c.authorize(free.key_id, "local-small", prompt_tokens=10, max_completion_tokens=10)


async def test_request_ids_are_scoped_to_the_key(settings: LedgerSettings) -> None:
    async with running_ledger(settings, clock=FixedClock(datetime(2031, 5, 14, tzinfo=UTC))) as led:
        c = led.client
        a = await make_key(led.admin, org="orga", email="a@a.test")
        b = await make_key(led.admin, org="orgb", email="b@b.test")
        for k in (a, b):
            await led.admin.set_budget("org", k.org_id, unit="usd", period="monthly", hard_limit=10**9)
        ra = await c.authorize(a.key_id, "frontier", prompt_tokens=100, max_completion_tokens=10, request_id="rq-1")
        await c.commit(CommitCall(ra.reservation_id, a.key_id, 100, 10))
        # Org B's use of the same id is simply its own request.
        rb = await c.authorize(b.key_id, "frontier", prompt_tokens=100, max_completion_tokens=10, request_id="rq-1")
        assert not rb.replayed and rb.reservation_id != ra.reservation_id
        await c.commit(CommitCall(rb.reservation_id, b.key_id, 100, 10))
        charges = [e for e in await led.admin.list_events(kind="charge") if e.request_id == "rq-1"]
        assert sorted(e.org_id for e in charges) == ["orga", "orgb"]
        for k in (a, b):
            (budget,) = await led.admin.list_budgets("org", k.org_id)
            assert budget.spent == charges[0].cost.nano_usd
        # Enumeration: an id another org used and one nobody used answer alike.
        await c.authorize(a.key_id, "frontier", prompt_tokens=5, max_completion_tokens=5, request_id="taken")
        used = await c.authorize(b.key_id, "frontier", prompt_tokens=5, max_completion_tokens=5, request_id="taken")
        await c.release(used.reservation_id, b.key_id)  # the same state for the second question
        fresh = await c.authorize(b.key_id, "frontier", prompt_tokens=5, max_completion_tokens=5, request_id="free")
        assert used.reservation_id != fresh.reservation_id
        same = ("held_nano_usd", "expires_at_us", "soft_alerts", "min_remaining_fraction", "replayed")
        assert [getattr(used, f) for f in same] == [getattr(fresh, f) for f in same]
        # The same for cache hits: independent per key.
        ha = await c.record_cache_hit(cache_hit(a.key_id, "hit-1", tier="frontier", prompt_tokens=10, record_id="x"))
        hb = await c.record_cache_hit(cache_hit(b.key_id, "hit-1", tier="frontier", prompt_tokens=10, record_id="x"))
        assert ha.event_id != hb.event_id and (ha.key_id, hb.key_id) == (a.key_id, b.key_id)
        # Within one key an id stays one request: a reuse replays.
        again = await c.authorize(a.key_id, "frontier", prompt_tokens=100, max_completion_tokens=10,
                                  request_id="rq-1")  # fmt: skip
        assert again.replayed and again.reservation_id == ra.reservation_id


async def test_every_served_cache_hit_is_one_event(settings: LedgerSettings) -> None:
    async with running_ledger(settings) as led:
        c = led.client
        k = await make_key(led.admin)
        first = await c.record_cache_hit(cache_hit(k.key_id, "q-1", tier="frontier", prompt_tokens=40,
                                                   completion_tokens=8, record_id="ans-1"))  # fmt: skip
        # A retry of the same record (a journal replay) lands once.
        retry = await c.record_cache_hit(cache_hit(k.key_id, "q-1", tier="frontier", prompt_tokens=40,
                                                   completion_tokens=8, record_id="ans-1", served=True))  # fmt: skip
        assert retry.event_id == first.event_id
        # Another answer under the same request id, not served yet: refused.
        with pytest.raises(AlreadyExists, match="already used by another request of this API key"):
            await c.record_cache_hit(cache_hit(k.key_id, "q-1", tier="frontier", record_id="ans-2"))
        # One that was served (the ledger was away at the time) is its own event.
        late = await c.record_cache_hit(cache_hit(k.key_id, "q-1", tier="frontier", prompt_tokens=40, record_id="ans-3",
                                        served=True))  # fmt: skip
        assert late.event_id != first.event_id and "recorded after it was served" in late.detail
        hits = [e for e in await led.admin.list_events(kind="cache_hit") if e.request_id == "q-1"]
        assert len(hits) == 2
        # One request id, one request, across chats and cache hits.
        await c.authorize(k.key_id, "frontier", prompt_tokens=1, max_completion_tokens=1, request_id="q-2")
        with pytest.raises(AlreadyExists):
            await c.record_cache_hit(cache_hit(k.key_id, "q-2", tier="frontier", record_id="ans-4"))
        with pytest.raises(AlreadyExists):
            await c.authorize(k.key_id, "frontier", prompt_tokens=1, max_completion_tokens=1, request_id="q-1")
        # Without a record id a request id is the record (older callers): idempotent.
        old = await c.record_cache_hit(cache_hit(k.key_id, "q-3", tier="frontier"))
        assert (await c.record_cache_hit(cache_hit(k.key_id, "q-3", tier="frontier"))).event_id == old.event_id


async def test_embeddings_are_charged_on_their_own_tier_for_every_key(settings: LedgerSettings) -> None:
    async with running_ledger(settings) as led:
        c = led.client
        k = await make_key(led.admin, allowed_tiers=["local-small"])
        price = {p.tier: p for p in await c.list_prices()}["embeddings"]
        assert price.input_per_million > 0 and price.model == "all-MiniLM-L6-v2"
        r = await c.authorize(k.key_id, "embeddings", prompt_tokens=2560, max_completion_tokens=0)
        ev = (await c.commit(CommitCall(r.reservation_id, k.key_id, 2560, 0))).event
        assert ev.kind == "embedding" and ev.cost == -(-2560 * price.input_per_million // 10**6) > 0
        assert ev.counterfactual_cost == ev.cost  # no savings claimed for embeddings
        async with LedgerClient(led.target, bearer=ADMIN_TOKEN) as reader:
            (row,) = await reader.usage(group_by=["tier"])
        assert (row.group["tier"], row.requests, row.cost) == ("embeddings", 1, ev.cost)
        with pytest.raises(PermissionDenied):  # the allow-list still binds completion tiers
            await c.authorize(k.key_id, "frontier", prompt_tokens=1, max_completion_tokens=1)
