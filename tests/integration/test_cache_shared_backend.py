"""Two cache servers on one shared pgvector backend, over gRPC on loopback.

The cache service keeps no entry state with ``backend = "pgvector"``: an
entry stored through one replica is a hit through the other, and an
invalidation through either reaches both. Real servers, real PostgreSQL with
pgvector (testsupport/pgvector.py), real embedder.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from rationer import errors
from rationer.platform.settings import load_service_settings
from services.cache.client import CacheClient
from services.cache.settings import CacheSettings
from testsupport.cache import running_cache
from testsupport.pgvector import PgvectorServer, fresh_schema
from testsupport.platform import SERVICE_TOKEN

Q = "How do I turn on two-factor authentication?"
A = "Settings > Security > Two-factor authentication > Turn on."


@asynccontextmanager
async def two_replicas(pg: PgvectorServer, **overrides: Any) -> AsyncIterator[tuple[CacheClient, CacheClient]]:
    """Cache servers A and B on the same database and schema, and a client of each."""
    shared = pg.cache_settings(fresh_schema())
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            running = await stack.enter_async_context(running_cache(**shared, **overrides))
            clients.append(await stack.enter_async_context(running.client()))
        yield clients[0], clients[1]


async def test_store_via_a_hits_via_b_and_invalidation_via_b_reaches_a(pgvector: PgvectorServer) -> None:
    async with two_replicas(pgvector) as (a, b):
        stored = await a.store("acme", Q, A)
        exact = await b.lookup("acme", "how do I turn ON two-factor authentication")
        assert exact.hit and exact.entry_id == stored.entry_id and exact.match_kind == "exact"
        semantic = await b.lookup("acme", "How can I turn on two-factor authentication?")
        assert semantic.hit and semantic.match_kind == "semantic" and semantic.answer == A
        # The false-hit guard runs in each replica on what the backend returns.
        trap = await b.lookup("acme", "How do I turn off two-factor authentication?")
        assert not trap.hit and trap.guard_rejection == "polarity"
        assert await b.invalidate(tenant="acme", entry_id=stored.entry_id) == 1
        assert not (await a.lookup("acme", Q)).hit
        await b.store("acme", "Where is the office?", "Leeds")
        await b.store("acme", "Who do I call for IT?", "x100")
        assert (await a.stats("acme")).entries == 2
        assert await a.invalidate(tenant="acme") == 2
        assert not (await b.lookup("acme", "Where is the office?")).hit


async def test_a_hit_served_by_a_is_reported_wrong_through_b_and_counted_once(pgvector: PgvectorServer) -> None:
    async with two_replicas(pgvector) as (a, b):
        stored = await a.store("acme", Q, A)
        assert (await a.lookup("acme", Q, request_id="rq-1", key_id="key-a")).hit
        with pytest.raises(errors.PermissionDenied):
            await b.report_wrong_hit("acme", "key-b", "rq-1")  # only the key that received it
        first = await b.report_wrong_hit("acme", "key-a", "rq-1")
        assert first.entry_id == stored.entry_id and first.evicted and not first.already_reported
        again = await a.report_wrong_hit("acme", "key-a", "rq-1")
        assert again.already_reported and not again.evicted
        assert not (await a.lookup("acme", Q)).hit  # evicted for every replica


async def test_a_tenant_first_seen_by_one_replica_is_known_to_the_other(pgvector: PgvectorServer) -> None:
    async with two_replicas(pgvector) as (a, b):
        with pytest.raises(errors.NotFound):
            await b.lookup("globex", Q)
        await a.store("globex", Q, A)
        assert (await b.lookup("globex", Q)).hit
        with pytest.raises(errors.NotFound):
            await b.lookup("never-seen", Q)


async def test_capacity_is_enforced_across_replicas(pgvector: PgvectorServer) -> None:
    async with two_replicas(pgvector, capacity_per_tenant=2) as (a, b):
        await a.store("acme", "Where is the office?", "Leeds")
        await b.store("acme", "Who do I call for IT?", "x100")
        evicting = await a.store("acme", "When is payday?", "the 25th")
        assert evicting.evicted == 1 and (await b.stats("acme")).entries == 2


TENANT = st.text(alphabet="abcdefghij-_0123456789", min_size=1, max_size=8)
TEXTS = st.sampled_from([Q, "Cancel my order", "cancel my order!", "Where is the office?"])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.booleans(), st.booleans(), TENANT, TEXTS), min_size=2, max_size=12))
async def test_no_replica_ever_serves_another_tenants_entry(
    pgvector: PgvectorServer, ops: list[tuple[bool, bool, str, str]]
) -> None:
    # Invariant (docs/cache.md, "Backends"): on the shared backend a lookup,
    # through any replica, only returns an entry its own tenant stored.
    async with two_replicas(pgvector) as clients:
        owners: dict[str, str] = {}
        for is_store, via_b, tenant, text in ops:
            client = clients[via_b]
            if is_store:
                owners[(await client.store(tenant, text, f"{tenant} answer")).entry_id] = tenant
                continue
            try:
                res = await client.lookup(tenant, text, min_similarity=0.01, disable_guard=True)
            except errors.NotFound:
                assert tenant not in owners.values()  # only a tenant that stored nothing yet
                continue
            assert not res.hit or (owners[res.entry_id] == tenant and res.answer == f"{tenant} answer")


def test_the_shared_backend_needs_a_dsn() -> None:
    with pytest.raises(ValidationError, match="needs pg_dsn"):
        CacheSettings(backend="pgvector")
    with pytest.raises(ValidationError, match="pg_schema"):
        CacheSettings(backend="pgvector", pg_dsn="postgresql://x@127.0.0.1/db", pg_schema="Bad-Name;")


async def test_an_unreachable_database_is_unavailable_with_the_reason() -> None:
    dsn = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1"
    with pytest.raises(errors.Unavailable, match="cannot reach the cache database"):
        async with running_cache(backend="pgvector", pg_dsn=dsn, pg_schema=fresh_schema()):
            pass


def test_backend_settings_come_from_the_environment(pgvector: PgvectorServer) -> None:
    env = {"RATIONER_CACHE__BACKEND": "pgvector", "RATIONER_CACHE__PG_DSN": pgvector.dsn,
           "RATIONER_CACHE__PG_SCHEMA": "cache_env", "RATIONER_CACHE__PG_POOL_SIZE": "3",
           "RATIONER_SERVICE_TOKEN": SERVICE_TOKEN}  # fmt: skip
    s = load_service_settings(CacheSettings, "cache", None, env)
    assert (s.backend, s.pg_dsn, s.pg_schema, s.pg_pool_size) == ("pgvector", pgvector.dsn, "cache_env", 3)
    default = load_service_settings(CacheSettings, "cache", None, {"RATIONER_SERVICE_TOKEN": SERVICE_TOKEN})
    assert default.backend == "faiss"  # `rationer up`'s default
