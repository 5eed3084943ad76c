"""The cache service over gRPC on loopback: real ONNX embedder, FAISS, SQLite.

The tests taking ``backend`` run on both backends: embedded FAISS and the
shared pgvector one (a real PostgreSQL, testsupport/pgvector.py).
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.duration_pb2 import Duration
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rationer import errors
from rationer.api.cache.v1 import cache_pb2, cache_pb2_grpc
from rationer.platform.client import internal_channel
from services.cache.types import CacheContext, EntryMetadata
from testsupport.cache import running_cache, shared_embedder
from testsupport.pgvector import PgvectorServer


@pytest.fixture(params=["faiss", "pgvector"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings overrides of the backend under test ({} = the embedded default)."""
    if request.param == "faiss":
        return {}
    server: PgvectorServer = request.getfixturevalue("pgvector")
    return server.cache_settings()


Q = "How do I turn on two-factor authentication?"
A = "Settings > Security > Two-factor authentication > Turn on."


async def test_exact_semantic_and_trap_lookups_with_metadata(backend: dict[str, Any]) -> None:
    async with running_cache(**backend) as running, running.client() as client:
        meta = EntryMetadata(model="gemma3-270m", tier="local", saved_nano_usd=1234, prompt_tokens=9)
        stored = await client.store("acme", Q, A, metadata=meta)
        exact = await client.lookup("acme", "how do I turn ON two-factor authentication")
        assert exact.hit and exact.match_kind == "exact" and exact.entry_id == stored.entry_id
        assert exact.metadata is not None and exact.metadata.model == "gemma3-270m"
        assert exact.metadata.saved_nano_usd == 1234 and exact.metadata.created_at > 0
        # A rewording the verifier serves at the default bound (a typo at
        # cos 0.82 is below its operating point: docs/cache.md).
        typo = await client.lookup("acme", "How can I turn on two-factor authentication?")
        assert typo.hit and typo.match_kind == "semantic" and 0.5 < typo.similarity < 1.0
        trap = await client.lookup("acme", "How do I turn off two-factor authentication?")
        assert not trap.hit and trap.guard_rejection == "polarity" and trap.similarity > 0.8
        unguarded = await client.lookup("acme", "How do I turn off two-factor authentication?", disable_guard=True)
        assert unguarded.hit  # what a threshold-only cache would serve
        stats = await client.stats("acme")
        assert (stats.entries, stats.hits, stats.guard_rejections) == (1, 3, 1)


async def test_router_passes_its_own_vector() -> None:
    vec = shared_embedder().embed([Q])[0]
    async with running_cache() as running, running.client() as client:
        await client.store("acme", Q, A, vec)
        result = await client.lookup("acme", "How can I turn on two-factor authentication?", list(vec))
        assert result.hit and result.similarity > 0.99


async def test_exact_only_lookup_sends_no_vector_and_serves_only_the_exact_match(backend: dict[str, Any]) -> None:
    vec = shared_embedder().embed([Q])[0]
    async with running_cache(**backend) as running, running.client() as client:
        await client.store("acme", Q, A, vec)
        # The same vector that hits semantically above: exact_only ignores it.
        reworded = await client.lookup("acme", "How can I turn on two-factor authentication?", vec, exact_only=True)
        assert not reworded.hit
        exact = await client.lookup("acme", "how do I turn ON two-factor authentication", vec, exact_only=True)
        assert exact.hit and exact.match_kind == "exact" and exact.answer == A


async def test_tenant_isolation_and_unknown_tenant_is_not_found(backend: dict[str, Any]) -> None:
    async with running_cache(**backend) as running, running.client() as client:
        await client.store("acme", Q, A)
        await client.store("globex", "Where is the office?", "Leeds")
        assert not (await client.lookup("globex", Q)).hit  # another tenant's entry is never served
        with pytest.raises(errors.NotFound, match="'never-seen' has stored nothing in this cache yet"):
            await client.lookup("never-seen", Q)
        with pytest.raises(errors.NotFound):
            await client.stats("never-seen")
        # Clean-up of a tenant with nothing is not an error: nothing to remove.
        assert await client.invalidate(tenant="never-seen") == 0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(
        st.tuples(
            st.booleans(), st.sampled_from(["t1", "t2"]), st.sampled_from([Q, "Cancel my order", "cancel my order!"])
        ),
        min_size=2,
        max_size=10,
    )
)
async def test_isolation_property_over_grpc(ops: list[tuple[bool, str, str]]) -> None:
    async with running_cache() as running, running.client() as client:
        owners: dict[str, str] = {}
        for is_store, tenant, text in ops:
            if is_store:
                owners[(await client.store(tenant, text, f"{tenant} answer")).entry_id] = tenant
            else:
                try:
                    res = await client.lookup(tenant, text, min_similarity=0.01, disable_guard=True)
                except errors.NotFound:
                    assert tenant not in owners.values()  # this tenant has stored nothing yet
                    continue
                assert not res.hit or (owners[res.entry_id] == tenant and res.answer == f"{tenant} answer")


async def test_context_is_part_of_the_key(backend: dict[str, Any]) -> None:
    async with running_cache(**backend) as running, running.client() as client:
        await client.store("acme", Q, A, context=CacheContext(tier_class="local", max_tokens=256))
        assert not (await client.lookup("acme", Q, context=CacheContext(tier_class="frontier"))).hit
        assert (await client.lookup("acme", Q, context=CacheContext(tier_class="local", max_tokens=256))).hit


async def test_ttl_eviction_and_invalidate(backend: dict[str, Any]) -> None:
    async with running_cache(capacity_per_tenant=2, **backend) as running, running.client() as client:
        short = await client.store("acme", "What is the wifi password?", "guest123", ttl_s=0.2)
        await asyncio.sleep(0.4)
        assert not (await client.lookup("acme", "What is the wifi password?")).hit
        await client.store("acme", "Where is the office?", "Leeds")
        await client.store("acme", "Who do I call for IT?", "x100")
        evicting = await client.store("acme", "When is payday?", "the 25th")
        assert evicting.evicted >= 1  # the expired entry is swept, then LRU trims to 2
        assert (await client.stats("acme")).entries == 2
        with pytest.raises(errors.NotFound):
            await client.invalidate(tenant="acme", entry_id=short.entry_id)
        assert await client.invalidate(everything=True) == 2


async def test_persistence_across_restart_and_corrupt_snapshot(tmp_path: Path) -> None:
    async with running_cache(tmp_path) as running, running.client() as client:
        await client.store("acme", Q, A)
    async with running_cache(tmp_path) as running, running.client() as client:
        assert running.cache.loaded_from == "snapshot"
        assert (await client.lookup("acme", "How can I turn on two-factor authentication?")).hit
    snap = tmp_path / "index.snapshot"
    snap.write_bytes(snap.read_bytes()[:-7])  # truncated on disk
    async with running_cache(tmp_path, save_snapshot=False) as running, running.client() as client:
        assert running.cache.loaded_from == "rebuild"
        assert (tmp_path / "index.corrupt").exists()
        assert (await client.lookup("acme", Q)).hit
        await client.store("acme", "Where is the office?", "Leeds")  # then "crash": no snapshot
    async with running_cache(tmp_path) as running, running.client() as client:
        assert running.cache.loaded_from == "rebuild"
        assert (await client.lookup("acme", "where is the office")).answer == "Leeds"


async def _status(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value.code()


async def test_bad_inputs_get_invalid_argument_and_not_found() -> None:
    async with running_cache() as running:
        channel = internal_channel(running.address, running.service_token)
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        bad = [
            stub.Lookup(cache_pb2.LookupRequest(tenant="acme", text="")),
            stub.Lookup(cache_pb2.LookupRequest(tenant="", text=Q)),
            stub.Lookup(cache_pb2.LookupRequest(tenant="acme", text=Q, vector=[0.1] * 383)),
            stub.Lookup(cache_pb2.LookupRequest(tenant="acme", text=Q, vector=[math.nan] + [0.1] * 383)),
            stub.Lookup(cache_pb2.LookupRequest(tenant="acme", text=Q, vector=[math.inf] + [0.1] * 383)),
            stub.Lookup(cache_pb2.LookupRequest(tenant="acme", text="x" * (3 * 1024 * 1024))),
            stub.Store(cache_pb2.StoreRequest(tenant="acme", text=Q, answer=A, ttl=Duration(seconds=-5))),
            stub.Store(cache_pb2.StoreRequest(tenant="acme", text=Q, answer="")),
            stub.Invalidate(cache_pb2.InvalidateRequest()),
        ]
        for call in bad:
            assert await _status(call) == grpc.StatusCode.INVALID_ARGUMENT
        assert (
            await _status(stub.Invalidate(cache_pb2.InvalidateRequest(entry_id="nope", tenant="acme")))
            == grpc.StatusCode.NOT_FOUND
        )
        # The service is still healthy after all of that.
        ok = await stub.Lookup(cache_pb2.LookupRequest(tenant="acme", text=Q, vector=list(np.ones(384) / np.sqrt(384))))
        assert not ok.hit
        await channel.close(None)


async def test_client_maps_errors_to_domain_errors() -> None:
    async with running_cache() as running, running.client() as client:
        with pytest.raises(errors.InvalidArgument, match="384"):
            await client.lookup("acme", Q, np.zeros(10, dtype=np.float32))
        with pytest.raises(errors.InvalidArgument, match="negative"):
            await client.store("acme", Q, A, ttl_s=-1.0)


async def test_exact_only_lookup_skips_embedding_and_search() -> None:
    async with running_cache() as running, internal_channel(running.address, running.service_token) as channel:
        client = running.client()
        await client.store("acme", Q, A)
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        exact = await stub.Lookup(cache_pb2.LookupRequest(tenant="acme", text=Q.upper(), exact_only=True))
        assert exact.hit and exact.match_kind == cache_pb2.MATCH_KIND_EXACT
        # A paraphrase is a semantic hit on a full lookup, but exact_only does not search.
        para = "How can I turn on two-factor authentication?"
        assert not (await stub.Lookup(cache_pb2.LookupRequest(tenant="acme", text=para, exact_only=True))).hit
        assert (await stub.Lookup(cache_pb2.LookupRequest(tenant="acme", text=para))).hit
        stats = await client.stats("acme")
        assert stats.misses == 0  # the exact-only probe is not counted as a miss
        await client.close()
