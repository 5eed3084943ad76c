"""Index rebuilds run off the event loop and lose nothing at the swap."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from rationer.embedding import DIM
from rationer.embedding.batcher import MicroBatcher
from rationer.platform.clock import FixedClock
from services.cache.cache import CachePolicy, SemanticCache
from services.cache.index import IndexConfig, NamespaceIndex
from services.cache.types import CacheContext, LookupQuery, StoreCommand
from testsupport.cache import shared_embedder


def units(n: int, seed: int) -> npt.NDArray[np.float32]:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    out: npt.NDArray[np.float32] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


@pytest.mark.parametrize("kind", ["auto", "hnsw"])
def test_changes_made_during_a_build_are_reconciled_at_the_swap(kind: str) -> None:
    index = NamespaceIndex(IndexConfig(kind=kind, hnsw_min_entries=50))
    vecs = units(120, 1)
    index.add(np.arange(100, dtype=np.int64), vecs[:100])
    if kind == "hnsw":
        for i in range(30):
            index.remove(i)  # 30% tombstones
    assert index.rebuild_due
    job = index.begin_rebuild()
    index.add(np.arange(100, 120, dtype=np.int64), vecs[100:])  # arrive while building
    index.remove(99)
    index.remove(50)
    index.finish_rebuild(*job())
    assert index.is_hnsw and not index.rebuilding and not index.rebuild_due
    for i in (110, 119, 60):
        assert index.search(vecs[i : i + 1], 1)[0][0][0] == i
    for gone in (99, 50, *(range(30) if kind == "hnsw" else ())):
        assert all(r != gone for r, _ in index.search(vecs[gone : gone + 1], 5)[0])


async def test_lookups_go_on_while_a_rebuild_is_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real = NamespaceIndex.begin_rebuild

    def held(self: NamespaceIndex) -> Callable[[], object]:
        job = real(self)

        def wait_then_build() -> object:
            release.wait(30)  # a rebuild that runs on the event loop would deadlock here
            return job()

        return wait_then_build

    monkeypatch.setattr(NamespaceIndex, "begin_rebuild", held)
    cache = SemanticCache(MicroBatcher(shared_embedder().embed), policy=CachePolicy(), clock=FixedClock(1e6),
                          index_config=IndexConfig(kind="auto", hnsw_min_entries=60))  # fmt: skip
    await cache.start()
    try:
        vecs = units(80, 2)
        await cache.store(StoreCommand("other", "a question", "an answer", vecs[79]))
        for i in range(60):
            await cache.store(StoreCommand("big", f"question {i}", f"answer {i}", vecs[i]))
        big = cache._backend._indexes[("big", CacheContext().key)]  # type: ignore[attr-defined]
        assert big.rebuilding and not big.is_hnsw
        # Served meanwhile: another tenant, the old index of this one, and new entries.
        assert (await cache.lookup(LookupQuery("other", "x", vecs[79], disable_guard=True))).hit
        assert (await cache.lookup(LookupQuery("big", "x", vecs[5], disable_guard=True))).answer == "answer 5"
        await cache.store(StoreCommand("big", "question 70", "answer 70", vecs[70]))
        await cache.invalidate(tenant="big", entry_id=(await cache.lookup(LookupQuery("big", "question 3"))).entry_id)
        release.set()
        await asyncio.wait_for(cache.wait_for_rebuilds(), 30)
        assert big.is_hnsw and not big.rebuilding
        assert (await cache.lookup(LookupQuery("big", "x", vecs[70], disable_guard=True))).answer == "answer 70"
        miss = await cache.lookup(LookupQuery("big", "x", vecs[3], disable_guard=True))
        assert miss.answer != "answer 3"
    finally:
        release.set()
        cache.close(save=False)
