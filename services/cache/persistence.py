"""The cache's indexes across restarts: built from the entry database, or restored from the snapshot.

The database (``EntryStore``) is the truth; the snapshot only saves rebuilding
the FAISS indexes at start, so any doubt about it (corrupt, stale, not
matching the rows) means rebuilding from the database.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog

from services.cache import snapshot
from services.cache.index import IndexConfig, NamespaceIndex
from services.cache.store import EntryStore

log = structlog.get_logger(__name__)

Namespace = tuple[str, str]  # (tenant, context key)
Vectors = dict[Namespace, dict[int, npt.NDArray[np.float32]]]


@dataclass(frozen=True)
class Loaded:
    indexes: dict[Namespace, NamespaceIndex]
    tenants: set[str]  # every tenant with a stored entry
    source: str  # "snapshot" | "rebuild" | "empty", for logs and tests


def load_indexes(store: EntryStore, snapshot_path: Path | None, config: IndexConfig) -> Loaded:
    """Every namespace's index (blocking: run it off the event loop)."""
    vectors: Vectors = defaultdict(dict)
    tenants: set[str] = set()
    for row_id, tenant, ctx, vec in store.vectors():
        vectors[(tenant, ctx)][row_id] = vec
        tenants.add(tenant)
    if snapshot_path is not None and snapshot_path.exists():
        restored = _restore(snapshot_path, store, config, vectors)
        if restored is not None:
            return Loaded(restored, tenants, "snapshot")
    indexes: dict[Namespace, NamespaceIndex] = {}
    for ns, rows in vectors.items():
        index = NamespaceIndex(config)
        index.add(np.fromiter(rows.keys(), dtype=np.int64), np.stack(list(rows.values())))
        if index.rebuild_due:
            index.rebuild_now()  # at start, off the event loop
        indexes[ns] = index
    log.info("cache index built from the database", namespaces=len(vectors))
    return Loaded(indexes, tenants, "rebuild" if vectors else "empty")


def _restore(
    path: Path, store: EntryStore, config: IndexConfig, vectors: Vectors
) -> dict[Namespace, NamespaceIndex] | None:
    try:
        generation, blobs = snapshot.read(path)
    except snapshot.SnapshotCorrupt as exc:
        aside = path.with_suffix(".corrupt")
        path.replace(aside)
        log.warning("corrupt index snapshot moved aside; rebuilding from the database",
                    error=str(exc), moved_to=str(aside))  # fmt: skip
        return None
    if generation != store.generation() or len(blobs) != len(vectors):
        log.info("index snapshot is stale; rebuilding from the database")
        return None
    indexes: dict[Namespace, NamespaceIndex] = {}
    try:
        for blob in blobs:
            ns = (blob.tenant, blob.ctx)
            indexes[ns] = NamespaceIndex.restore(config, blob.index, vectors.get(ns, {}))
    except (ValueError, RuntimeError) as exc:
        log.warning("index snapshot does not match the database; rebuilding", error=str(exc))
        return None
    log.info("cache index loaded from snapshot", namespaces=len(indexes))
    return indexes


def save_snapshot(path: Path, store: EntryStore, indexes: dict[Namespace, NamespaceIndex]) -> None:
    blobs = []
    for (tenant, ctx), index in indexes.items():
        if len(index):
            data, _ids = index.serialize()
            blobs.append(snapshot.NamespaceBlob(tenant, ctx, data))
    snapshot.write(path, store.generation(), blobs)
    log.info("index snapshot written", namespaces=len(blobs), path=str(path))
