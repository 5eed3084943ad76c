"""FAISS nearest-neighbour indexes, one per (tenant, context) namespace.

Isolation is structural: a lookup only ever searches the index of its own
tenant and context, so another tenant's vectors are never candidates.

Flat (exact inner product) supports removal; HNSW does not, so removed ids
become tombstones filtered out of results, and the index is rebuilt from the
live vectors when tombstones pass a quarter of it. ``auto`` starts flat and
switches a namespace to HNSW once it holds ``hnsw_min_entries`` vectors.

Rebuilds never run inside ``add``/``remove``: those only set
``rebuild_due``. The owner either calls :meth:`rebuild_now` (loading, off the
event loop) or runs :meth:`begin_rebuild`'s job on a worker thread and hands
the result to :meth:`finish_rebuild` on its own thread. Meanwhile the old
index keeps answering; entries added or removed during the build are
reconciled at the swap (added to the new index / tombstoned in it), so the
swap loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from rationer.embedding import DIM

Vector = npt.NDArray[np.float32]

# One query at a time is the serving pattern; OpenMP's thread fan-out costs
# more than it saves there (flat search at 100k: 32 ms with OpenMP on 2 busy
# cores vs 5 ms on one thread).
faiss.omp_set_num_threads(1)
_BUILD_CHUNK = 2048


@dataclass(frozen=True)
class IndexConfig:
    kind: str = "auto"  # "flat" | "hnsw" | "auto"
    hnsw_m: int = 32
    ef_search: int = 64
    ef_construction: int = 40
    hnsw_min_entries: int = 20_000


class NamespaceIndex:
    """Vectors of one namespace, keyed by the entry's integer row id."""

    def __init__(self, config: IndexConfig) -> None:
        self._config = config
        self._vectors: dict[int, Vector] = {}  # live vectors, for rebuilds
        self._tombstones: set[int] = set()
        self.is_hnsw = config.kind == "hnsw"
        self._index: faiss.Index = _new_index(config, hnsw=self.is_hnsw)
        self.rebuilding = False  # a background build is in flight

    @property
    def rebuild_due(self) -> bool:
        """Should the index be rebuilt (flat -> HNSW, or too many tombstones)?"""
        cfg = self._config
        if not self.is_hnsw:
            return cfg.kind == "auto" and len(self._vectors) >= cfg.hnsw_min_entries
        return len(self._tombstones) * 4 > self._index.ntotal

    def __len__(self) -> int:
        return len(self._vectors)

    def add(self, ids: npt.NDArray[np.int64], vectors: Vector) -> None:
        if len(ids) == 0:
            return
        for i, v in zip(ids.tolist(), vectors, strict=True):
            self._vectors[int(i)] = v
            self._tombstones.discard(int(i))
        self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))

    def remove(self, row_id: int) -> None:
        if self._vectors.pop(row_id, None) is None:
            return
        if not self.is_hnsw:
            self._index.remove_ids(np.array([row_id], dtype=np.int64))  # type: ignore[arg-type]
            return
        self._tombstones.add(row_id)

    def _target_hnsw(self) -> bool:
        return self.is_hnsw or (self._config.kind == "auto" and len(self._vectors) >= self._config.hnsw_min_entries)

    def rebuild_now(self) -> None:
        """Rebuild in the calling thread (loading, snapshots; never the event loop)."""
        self.finish_rebuild(*self.begin_rebuild()())

    def begin_rebuild(self) -> Callable[[], tuple[faiss.Index, set[int]]]:
        """A job that builds the replacement from the vectors live now; it
        touches no state of this object, so it may run on another thread."""
        snapshot = dict(self._vectors)
        config, hnsw = self._config, self._target_hnsw()
        self.rebuilding = True

        def build() -> tuple[faiss.Index, set[int]]:
            index = _new_index(config, hnsw=hnsw)
            ids = list(snapshot)
            # In chunks: stacking holds the GIL (FAISS's add does not), so one
            # 100k-row stack would stall the event loop for a few hundred ms.
            for start in range(0, len(ids), _BUILD_CHUNK):
                part = ids[start : start + _BUILD_CHUNK]
                index.add_with_ids(np.stack([snapshot[i] for i in part]), np.array(part, dtype=np.int64))
            return index, set(ids)

        return build

    def finish_rebuild(self, built: faiss.Index, built_ids: set[int]) -> None:
        """Swap in ``built`` after reconciling what changed during the build."""
        added = [i for i in self._vectors if i not in built_ids]
        if added:
            built.add_with_ids(np.stack([self._vectors[i] for i in added]), np.array(added, dtype=np.int64))
        gone = built_ids - self._vectors.keys()
        self.is_hnsw = _is_hnsw(built)
        if gone and not self.is_hnsw:
            built.remove_ids(np.fromiter(gone, dtype=np.int64, count=len(gone)))  # type: ignore[arg-type]
            gone = set()
        self._index, self._tombstones, self.rebuilding = built, gone, False

    def search(self, queries: Vector, k: int) -> list[list[tuple[int, float]]]:
        """Top-``k`` (row id, cosine) per query row, best first."""
        if not self._vectors:
            return [[] for _ in range(len(queries))]
        extra = min(len(self._tombstones), 64)
        scores, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k + extra)
        out: list[list[tuple[int, float]]] = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            hits = [
                (int(i), float(s))
                for i, s in zip(row_ids, row_scores, strict=True)
                if i >= 0 and int(i) not in self._tombstones
            ]
            out.append(hits[:k])
        return out

    def serialize(self) -> tuple[bytes, npt.NDArray[np.int64]]:
        """The FAISS index bytes (tombstones compacted away) and its live ids."""
        if self._tombstones:
            self.rebuild_now()
        data = faiss.serialize_index(self._index)
        ids = np.fromiter(self._vectors.keys(), dtype=np.int64, count=len(self._vectors))
        return bytes(data.tobytes()), ids

    @classmethod
    def restore(cls, config: IndexConfig, blob: bytes, vectors: dict[int, Vector]) -> NamespaceIndex:
        """Load a serialized index whose ids must equal ``vectors``' keys."""
        obj = cls.__new__(cls)
        obj._config = config
        obj._vectors = dict(vectors)
        obj._tombstones = set()
        obj._index = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
        if obj._index.ntotal != len(vectors):
            raise ValueError("snapshot index size does not match the database")
        obj.rebuilding = False
        obj.is_hnsw = _is_hnsw(obj._index)
        if obj.is_hnsw:
            id_map: Any = faiss.downcast_index(obj._index)
            inner: Any = faiss.downcast_index(id_map.index)
            inner.hnsw.efSearch = config.ef_search
        return obj


def _new_index(config: IndexConfig, *, hnsw: bool) -> faiss.Index:
    inner: faiss.Index
    if hnsw:
        graph = faiss.IndexHNSWFlat(DIM, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efSearch = config.ef_search
        graph.hnsw.efConstruction = config.ef_construction
        inner = graph
    else:
        inner = faiss.IndexFlatIP(DIM)
    return faiss.IndexIDMap2(inner)


def _is_hnsw(index: faiss.Index) -> bool:
    id_map: Any = faiss.downcast_index(index)
    return isinstance(faiss.downcast_index(id_map.index), faiss.IndexHNSWFlat)
