"""The vector-store port: where the cache's entries and their vectors live.

:class:`SemanticCache` owns the policy (validation, thresholds, the false-hit
guard and verifier, counters, feedback); a backend owns the entries and
answers "the best live candidates of this (tenant, context) namespace".
Two implementations:

* ``services.cache.faiss_backend.EmbeddedFaissBackend`` (the default, and
  ``rationer up``'s): SQLite plus in-process FAISS indexes. Fast, but each
  process has its own entries, so it cannot be replicated.
* ``services.cache.pgvector_backend.PgvectorBackend``: one PostgreSQL table
  with a pgvector HNSW index. The cache process keeps no entry state, so any
  number of replicas on one database see the same entries.

Every backend must hold these, whatever its engine (docs/cache.md,
"Backends"): ``search`` and ``exact`` only return entries of the asked tenant
and context that have not expired at ``now``; removals are visible to the
next call, in any process sharing the backend. The cache still re-checks the
namespace of every candidate, so isolation never rests on a backend alone.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from services.cache.feedback import ReceiptLog
from services.cache.store import Entry, NewEntry

Vector = npt.NDArray[np.float32]


class VectorBackend(Protocol):
    # "snapshot" | "rebuild" | "empty" (embedded) or "shared", for logs and tests.
    loaded_from: str

    async def start(self) -> None:
        """Load or connect; blocking work runs off the event loop."""

    def close(self, *, save: bool) -> None:
        """Release everything; ``save`` writes what speeds the next start, if anything."""

    def checkpoint(self) -> None:
        """Persist derived state now (the embedded snapshot); a no-op where there is none."""

    async def wait_for_rebuilds(self) -> None:
        """Until background index work is done (tests, benchmarks)."""

    def receipt_log(self) -> ReceiptLog | None:
        """Where wrong-hit receipts go when they must be shared; None: the cache's own (data_dir or memory)."""

    async def has_tenant(self, tenant: str) -> bool:
        """Has ``tenant`` ever stored an entry here?"""

    async def insert(self, entry: NewEntry) -> None:
        """Store ``entry``, replacing the tenant's entry with the same exact key."""

    async def exact(self, tenant: str, ctx: str, exact: str, now: float) -> Entry | None: ...

    async def search(self, tenant: str, ctx: str, vector: Vector, k: int, now: float) -> list[tuple[Entry, float]]:
        """Up to ``k`` live entries of the namespace with their cosine, best first."""

    async def touch(self, entry: Entry, now: float) -> None:
        """Record a hit, for LRU eviction."""

    async def by_entry_id(self, entry_id: str) -> Entry | None: ...

    async def remove(self, entries: list[Entry]) -> int:
        """Remove these entries; returns how many were still there."""

    async def remove_tenant(self, tenant: str | None) -> int:
        """Remove one tenant's entries, or every tenant's (None)."""

    async def remove_expired(self, now: float, tenant: str | None = None) -> int: ...

    async def evict_lru(self, tenant: str, capacity: int) -> int:
        """Remove the tenant's least recently used entries beyond ``capacity``."""

    async def count(self, tenant: str | None = None) -> int: ...

    async def tenant_count(self) -> int:
        """Tenants with at least one entry."""
