"""SemanticCache with the real embedder, real FAISS and real SQLite files.

Tests about what a cache promises (TTL, LRU, context, invalidation, tenant
isolation) run on both backends (``backend`` fixture): the embedded FAISS one
and the shared pgvector one on a real PostgreSQL (testsupport/pgvector.py).
Vectors are passed explicitly where the test is about storage semantics, so
those tests need no inference; the embedder is still the real one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rationer.embedding import DIM
from rationer.embedding.batcher import MicroBatcher
from rationer.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from rationer.platform.clock import FixedClock
from services.cache.backend import VectorBackend
from services.cache.cache import CachePolicy, SemanticCache
from services.cache.faiss_backend import EmbeddedFaissBackend
from services.cache.pgvector_backend import PgvectorBackend, PgvectorConfig
from services.cache.types import CacheContext, LookupQuery, StoreCommand
from testsupport.cache import shared_embedder
from testsupport.pgvector import fresh_schema

Backends = Callable[[], VectorBackend | None]


@pytest.fixture(params=["faiss", "pgvector"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backends]:
    """Makes the backend of one cache: None is the embedded default."""
    if request.param == "faiss":
        yield lambda: None
        return
    server = request.getfixturevalue("pgvector")
    made: list[PgvectorBackend] = []

    def shared() -> VectorBackend:
        made.append(PgvectorBackend(PgvectorConfig(dsn=server.dsn, schema=fresh_schema(), pool_size=2)))
        return made[-1]

    yield shared
    for b in made:
        b.close(save=False)


def embedded(cache: SemanticCache) -> EmbeddedFaissBackend:
    assert isinstance(cache.backend, EmbeddedFaissBackend)
    return cache.backend


def Clock() -> FixedClock:
    return FixedClock(1_000_000.0)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


async def make(
    tmp: Path | None, clock: FixedClock | None = None, backend: Backends | None = None, **policy: object
) -> SemanticCache:
    cache = SemanticCache(
        MicroBatcher(shared_embedder().embed),
        data_dir=tmp,
        policy=CachePolicy(**policy),  # type: ignore[arg-type]
        clock=clock or Clock(),
        backend=backend() if backend is not None else None,
    )
    await cache.start()
    return cache


async def test_not_started_is_unavailable() -> None:
    cache = SemanticCache(MicroBatcher(shared_embedder().embed))
    with pytest.raises(Unavailable):
        await cache.lookup(LookupQuery(tenant="t", text="hello"))


async def test_ttl_expiry_with_an_injected_clock(backend: Backends) -> None:
    clock = Clock()
    cache = await make(None, clock, backend)
    await cache.store(StoreCommand("t", "What is the VAT rate?", "20%", unit(1), ttl_s=60))
    assert (await cache.lookup(LookupQuery("t", "What is the VAT rate?", unit(1)))).hit
    clock.advance(61)
    assert not (await cache.lookup(LookupQuery("t", "What is the VAT rate?", unit(1)))).hit
    assert await cache.sweep_expired() == 1


async def test_lru_eviction_keeps_recently_used_entries(backend: Backends) -> None:
    clock = Clock()
    cache = await make(None, clock, backend, capacity_per_tenant=2)
    for i, text in enumerate(["alpha question one", "beta question two"]):
        clock.advance(1)
        await cache.store(StoreCommand("t", text, f"a{i}", unit(i)))
    clock.advance(1)
    assert (await cache.lookup(LookupQuery("t", "alpha question one", unit(0)))).hit  # alpha now recent
    clock.advance(1)
    result = await cache.store(StoreCommand("t", "gamma question three", "a2", unit(2)))
    assert result.evicted == 1
    assert (await cache.lookup(LookupQuery("t", "alpha question one", unit(0)))).hit
    assert not (await cache.lookup(LookupQuery("t", "beta question two", unit(1)))).hit
    other = await cache.store(StoreCommand("u", "beta question two", "x", unit(1)))
    assert other.evicted == 0  # capacity is per tenant


async def test_context_must_match(backend: Backends) -> None:
    cache = await make(None, backend=backend)
    local = CacheContext(tier_class="local")
    await cache.store(StoreCommand("t", "Summarise the refund policy", "...", unit(5), context=local))
    frontier = CacheContext(tier_class="frontier")
    assert not (await cache.lookup(LookupQuery("t", "Summarise the refund policy", unit(5), frontier))).hit
    assert (await cache.lookup(LookupQuery("t", "Summarise the refund policy", unit(5), local))).hit


async def test_invalidate_semantics(backend: Backends) -> None:
    cache = await make(None, backend=backend)
    a = await cache.store(StoreCommand("t", "first question here", "1", unit(1)))
    await cache.store(StoreCommand("t", "second question here", "2", unit(2)))
    await cache.store(StoreCommand("u", "third question here", "3", unit(3)))
    with pytest.raises(NotFound):
        await cache.invalidate(tenant="u", entry_id=a.entry_id)  # another tenant's id is not found
    assert await cache.invalidate(tenant="t", entry_id=a.entry_id) == 1
    assert await cache.invalidate(tenant="nobody") == 0
    assert await cache.invalidate(tenant="t") == 1
    with pytest.raises(InvalidArgument, match="all=true removes every tenant"):
        await cache.invalidate(tenant="u", everything=True)  # not a way to clear one tenant
    assert await cache.invalidate(everything=True) == 1
    with pytest.raises(InvalidArgument):
        await cache.invalidate()


async def test_persistence_snapshot_crash_and_corruption(tmp_path: Path) -> None:
    cache = await make(tmp_path)
    await cache.store(StoreCommand("t", "How do I reset my password?", "reset link", unit(9)))
    cache.close(save=True)
    reopened = await make(tmp_path)
    assert reopened.loaded_from == "snapshot"
    assert (await reopened.lookup(LookupQuery("t", "x y z", unit(9)))).answer == "reset link"
    # A write after the snapshot, then a crash (no save): the snapshot is stale.
    await reopened.store(StoreCommand("t", "How do I close my account?", "settings", unit(10)))
    reopened.close(save=False)
    crashed = await make(tmp_path)
    assert crashed.loaded_from == "rebuild"
    assert (await crashed.lookup(LookupQuery("t", "p q r", unit(10)))).answer == "settings"
    crashed.close(save=True)
    snap = tmp_path / "index.snapshot"
    data = bytearray(snap.read_bytes())
    data[-10] ^= 0xFF  # flip a byte in the body
    snap.write_bytes(bytes(data))
    recovered = await make(tmp_path)
    assert recovered.loaded_from == "rebuild"
    assert (tmp_path / "index.corrupt").exists()
    assert (await recovered.lookup(LookupQuery("t", "p q r", unit(10)))).hit
    recovered.close(save=False)


TENANTS = st.sampled_from(["acme", "globex", "initech"])
TEXTS = st.sampled_from(["How do I reset my password?", "What are your opening hours?", "Cancel my order"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(st.tuples(st.booleans(), TENANTS, TEXTS, st.integers(0, 3)), min_size=1, max_size=25),
    disable_guard=st.booleans(),
)
async def test_no_lookup_ever_returns_another_tenants_entry(
    backend: Backends, ops: list[tuple[bool, str, str, int]], disable_guard: bool
) -> None:
    # Identical texts and vectors across tenants: the strongest temptation.
    cache = await make(None, backend=backend)
    owner: dict[str, str] = {}
    for is_store, tenant, text, seed in ops:
        if is_store:
            res = await cache.store(StoreCommand(tenant, text, f"{tenant}:{text}", unit(seed)))
            owner[res.entry_id] = tenant
        else:
            q = LookupQuery(tenant, text, unit(seed), min_similarity=0.01, disable_guard=disable_guard)
            try:
                hit = await cache.lookup(q)
            except NotFound:
                assert tenant not in owner.values()  # only a tenant that stored nothing yet
                continue
            if hit.hit:
                assert owner[hit.entry_id] == tenant
                assert hit.answer.startswith(f"{tenant}:")
    cache.close(save=False)


async def test_a_row_in_the_wrong_namespace_index_is_never_served() -> None:
    # Isolation must not rest on the index alone: if a damaged snapshot put
    # tenant u's row into tenant t's index, t still never gets u's answer.
    cache = await make(None)
    await cache.store(StoreCommand("t", "where is the office", "Leeds", unit(1)))
    await cache.store(StoreCommand("u", "what is the wifi password", "u-secret", unit(2)))
    u_row = await cache.backend.by_entry_id((await cache.store(StoreCommand("u", "x y z", "u2", unit(3)))).entry_id)
    assert u_row is not None
    t_index = embedded(cache)._indexes[("t", CacheContext().key)]
    t_index.add(np.array([u_row.row_id], dtype=np.int64), unit(3).reshape(1, -1))
    got = await cache.lookup(LookupQuery("t", "x y z", unit(3), disable_guard=True))
    assert not got.hit


async def test_invalidating_a_whole_hnsw_tenant_drops_its_index_without_rebuilds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.cache.index import IndexConfig, NamespaceIndex

    cache = SemanticCache(MicroBatcher(shared_embedder().embed), data_dir=None, policy=CachePolicy(),
                          clock=Clock(), index_config=IndexConfig(kind="hnsw"))  # fmt: skip
    await cache.start()
    for i in range(40):
        await cache.store(StoreCommand("t", f"question number {i} here", str(i), unit(100 + i)))
    rebuilds: list[int] = []
    real = NamespaceIndex.begin_rebuild

    def counting(self: NamespaceIndex) -> object:
        rebuilds.append(1)
        return real(self)

    monkeypatch.setattr(NamespaceIndex, "begin_rebuild", counting)
    # Row by row, a quarter of tombstones would rebuild the index ~3 times per N.
    assert await cache.invalidate(tenant="t") == 40
    assert rebuilds == [] and ("t", CacheContext().key) not in embedded(cache)._indexes


async def test_hit_receipts_survive_a_restart_so_feedback_is_still_authorized(tmp_path: Path) -> None:
    clock = Clock()
    cache = await make(tmp_path, clock)
    await cache.store(StoreCommand("t", "What is the VAT rate?", "20%", unit(1)))
    await cache.store(StoreCommand("t", "Who wrote Hamlet?", "Shakespeare", unit(2)))
    for rid, text, vec in (("req-1", "What is the VAT rate?", unit(1)), ("req-2", "Who wrote Hamlet?", unit(2))):
        res = await cache.lookup(LookupQuery("t", text, vec, request_id=rid, key_id="key-a"))
        assert res.hit
    cache.close()

    cache = await make(tmp_path, clock)  # a new process would see only what is on disk
    with pytest.raises(PermissionDenied):
        await cache.report_wrong_hit("t", "key-b", "req-1")
    first = await cache.report_wrong_hit("t", "key-a", "req-1")
    assert first.evicted and not first.already_reported
    cache.close()

    cache = await make(tmp_path, clock)
    assert (await cache.report_wrong_hit("t", "key-a", "req-1")).already_reported  # counted once, across restarts too
    assert not (await cache.report_wrong_hit("t", "key-a", "req-2")).already_reported
    clock.advance(25 * 3600)
    with pytest.raises(NotFound):
        await cache.report_wrong_hit("t", "key-a", "req-2")  # reported already, and past the window anyway
    cache.close()
