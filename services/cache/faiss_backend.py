"""The embedded backend: entries in SQLite, one in-process FAISS index per (tenant, context).

The default, and ``rationer up``'s. The database is the truth; the indexes
are derived (rebuilt at start, or loaded from the snapshot, see
``persistence``), so this process is the only one that may write them: the
embedded backend serves a single cache process (``pgvector_backend`` is the
shared one). Every method runs on the event loop thread; index rebuilds run
on the rebuilder's thread.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import numpy as np
import structlog

from services.cache import persistence
from services.cache.backend import Vector
from services.cache.index import IndexConfig, NamespaceIndex
from services.cache.persistence import Namespace
from services.cache.rebuilds import Rebuilder
from services.cache.store import Entry, EntryStore, NewEntry

log = structlog.get_logger(__name__)


class EmbeddedFaissBackend:
    def __init__(self, data_dir: Path | None, index_config: IndexConfig | None = None) -> None:
        self._data_dir = data_dir
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        self._index_config = index_config or IndexConfig()
        self._store = EntryStore(data_dir / "cache.sqlite3" if data_dir is not None else None)
        self._indexes: dict[Namespace, NamespaceIndex] = {}
        self._rebuilder = Rebuilder()  # index rebuilds, never on the event loop
        # Tenants that have stored something (since the data was created).
        self._tenants: set[str] = set()
        self.loaded_from = ""

    # ---- start / stop -------------------------------------------------------

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._load)

    def _snapshot_path(self) -> Path | None:
        return self._data_dir / "index.snapshot" if self._data_dir is not None else None

    def _load(self) -> None:
        loaded = persistence.load_indexes(self._store, self._snapshot_path(), self._index_config)
        self._indexes, self.loaded_from = loaded.indexes, loaded.source
        self._tenants |= loaded.tenants

    def checkpoint(self) -> None:
        path = self._snapshot_path()
        if path is not None:
            persistence.save_snapshot(path, self._store, self._indexes)

    def close(self, *, save: bool) -> None:
        if save and self.loaded_from:
            self.checkpoint()
        self._rebuilder.close()
        self._store.close()

    async def wait_for_rebuilds(self) -> None:
        await self._rebuilder.wait()

    def receipt_log(self) -> None:
        return None  # one process: the cache keeps its receipts beside this data

    # ---- reads --------------------------------------------------------------

    async def has_tenant(self, tenant: str) -> bool:
        return tenant in self._tenants

    async def exact(self, tenant: str, ctx: str, exact: str, now: float) -> Entry | None:
        return self._store.exact(tenant, ctx, exact, now)

    async def search(self, tenant: str, ctx: str, vector: Vector, k: int, now: float) -> list[tuple[Entry, float]]:
        index = self._indexes.get((tenant, ctx))
        if index is None or not len(index):
            return []
        out: list[tuple[Entry, float]] = []
        for row_id, sim in index.search(vector.reshape(1, -1), k)[0]:
            entry = self._store.get(row_id)
            if entry is None or entry.expires_at <= now:
                continue
            if (entry.tenant, entry.ctx) != (tenant, ctx):
                # Only a damaged snapshot could map a row into another
                # namespace's index; isolation must not rest on it.
                log.error("index row outside its namespace; skipped", row_id=row_id)
                continue
            out.append((entry, sim))
        return out

    async def by_entry_id(self, entry_id: str) -> Entry | None:
        return self._store.by_entry_id(entry_id)

    async def count(self, tenant: str | None = None) -> int:
        return self._store.count(tenant)

    async def tenant_count(self) -> int:
        return self._store.tenant_count()

    # ---- writes -------------------------------------------------------------

    async def insert(self, entry: NewEntry) -> None:
        self._tenants.add(entry.tenant)
        row_id, replaced = self._store.insert(entry)
        if replaced is not None:
            self._unindex(replaced)
        ns = (entry.tenant, entry.ctx)
        index = self._indexes.get(ns)
        if index is None:
            index = self._indexes[ns] = NamespaceIndex(self._index_config)
        index.add(np.array([row_id], dtype=np.int64), entry.vector.reshape(1, -1))
        self._rebuilder.schedule(index)

    async def touch(self, entry: Entry, now: float) -> None:
        self._store.touch(entry.row_id, now)

    async def remove(self, entries: list[Entry]) -> int:
        return self._remove_rows([e.row_id for e in entries])

    async def remove_tenant(self, tenant: str | None) -> int:
        return self._remove_rows(self._store.tenant_rows(tenant))

    async def remove_expired(self, now: float, tenant: str | None = None) -> int:
        return self._remove_rows(self._store.expired(now, tenant))

    async def evict_lru(self, tenant: str, capacity: int) -> int:
        return self._remove_rows(self._store.lru_victims(tenant, capacity))

    def _unindex(self, entry: Entry) -> None:
        ns = (entry.tenant, entry.ctx)
        index = self._indexes.get(ns)
        if index is not None:
            index.remove(entry.row_id)
            if not len(index):
                del self._indexes[ns]
            else:
                self._rebuilder.schedule(index)

    def _remove_rows(self, row_ids: list[int]) -> int:
        removed = self._store.delete(row_ids)
        by_ns: dict[Namespace, list[Entry]] = defaultdict(list)
        for entry in removed:
            by_ns[(entry.tenant, entry.ctx)].append(entry)
        for ns, entries in by_ns.items():
            index = self._indexes.get(ns)
            if index is not None and len(entries) >= len(index):
                # The whole namespace goes: drop its index rather than remove
                # row by row, which would rebuild an HNSW index again and
                # again (each rebuild blocks the service).
                del self._indexes[ns]
                continue
            for entry in entries:
                self._unindex(entry)
        return len(removed)
