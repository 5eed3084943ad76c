"""The shared backend: every entry in one PostgreSQL database with pgvector.

The cache process keeps no entry state: whatever one replica stores, another
finds on its next lookup, and an invalidation through any replica is gone for
all (docs/cache.md, "Backends"). Statements are in ``pgvector_schema``.

psycopg's blocking pool runs on worker threads (``asyncio.to_thread``): the
driver releases the GIL while it waits on the network, so lookups of many
requests overlap, and the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import psycopg
import structlog
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from rationer.errors import Unavailable
from services.cache.backend import Vector
from services.cache.feedback import Receipt
from services.cache.pgvector_schema import Statements
from services.cache.store import Entry, NewEntry

log = structlog.get_logger(__name__)

T = TypeVar("T")
_EXPIRED_BATCH = 1000
# A pg_advisory_xact_lock key: replicas starting together create the schema one at a time.
_DDL_LOCK = 0x5241_5449_4F4E_4552 & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class PgvectorConfig:
    dsn: str
    schema: str = "rationer_cache"
    pool_size: int = 8
    ef_search: int = 128  # hnsw.ef_search: candidates the HNSW scan keeps; recall vs latency
    hnsw_m: int = 16
    connect_timeout_s: float = 10.0


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(*row[:13])


class PgvectorBackend:
    def __init__(self, config: PgvectorConfig) -> None:
        self._config = config
        self._sql = Statements(config.schema, hnsw_m=config.hnsw_m)
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._registered: set[str] = set()  # tenants this process has put in the tenants table
        # Stores since this process last counted a tenant's entries (see evict_lru).
        self._since_count: defaultdict[str, int] = defaultdict(int)
        self.loaded_from = ""

    # ---- start / stop -------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._connect)
        self.loaded_from = "shared"

    def _connect(self) -> None:
        cfg = self._config
        try:
            timeout = int(cfg.connect_timeout_s)
            with psycopg.connect(cfg.dsn, autocommit=True, connect_timeout=timeout) as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
                conn.execute(self._sql.ddl)
        except psycopg.OperationalError as exc:
            raise Unavailable(f"cannot reach the cache database (pg_dsn): {_reason(exc)}") from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise Unavailable(
                "the cache database user may not create the pgvector extension or the schema: run "
                f"CREATE EXTENSION vector as its owner once ({_reason(exc)})"
            ) from exc
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            cfg.dsn, min_size=1, max_size=cfg.pool_size, open=False, configure=self._configure,
            kwargs={"autocommit": True}, timeout=cfg.connect_timeout_s, name="rationer-cache",
        )  # fmt: skip
        pool.open(wait=True, timeout=cfg.connect_timeout_s)
        self._pool = pool
        log.info("cache backend: shared pgvector", schema=cfg.schema, pool_size=cfg.pool_size)

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        register_vector(conn)
        # strict_order: when the tenant/context filter drops most of what the
        # HNSW scan finds, it scans on (pgvector >= 0.8) instead of returning
        # fewer than k rows, and keeps the results sorted.
        conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(self._config.ef_search),))
        conn.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', false)")

    def close(self, *, save: bool) -> None:
        del save  # nothing derived to save: the database is all there is
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def checkpoint(self) -> None:
        return None

    async def wait_for_rebuilds(self) -> None:
        return None  # PostgreSQL maintains the HNSW index on every insert

    def _run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        if self._pool is None:
            raise Unavailable("the cache backend is not connected; retry shortly")
        try:
            with self._pool.connection() as conn:
                return fn(conn)
        except (psycopg.OperationalError, psycopg.errors.ConnectionTimeout) as exc:
            raise Unavailable(f"the cache database is unreachable: {_reason(exc)}") from exc

    async def _call(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        return await asyncio.to_thread(self._run, fn)

    def receipt_log(self) -> PgReceipts:
        return PgReceipts(self)

    # ---- reads --------------------------------------------------------------

    async def has_tenant(self, tenant: str) -> bool:
        q = self._sql.has_tenant
        return await self._call(lambda c: c.execute(q, (tenant,)).fetchone() is not None)

    async def exact(self, tenant: str, ctx: str, exact: str, now: float) -> Entry | None:
        q = self._sql.exact
        row = await self._call(lambda c: c.execute(q, (tenant, ctx, exact, now)).fetchone())
        return _entry(row) if row is not None else None

    async def search(self, tenant: str, ctx: str, vector: Vector, k: int, now: float) -> list[tuple[Entry, float]]:
        params = {"v": np.ascontiguousarray(vector, dtype=np.float32), "tenant": tenant, "ctx": ctx,
                  "now": now, "k": k}  # fmt: skip
        q = self._sql.search
        rows = await self._call(lambda c: c.execute(q, params).fetchall())
        return [(_entry(r), float(r[13])) for r in rows]

    async def by_entry_id(self, entry_id: str) -> Entry | None:
        q = self._sql.by_entry_id
        row = await self._call(lambda c: c.execute(q, (entry_id,)).fetchone())
        return _entry(row) if row is not None else None

    async def count(self, tenant: str | None = None) -> int:
        args: tuple[Any, ...]
        if tenant is None:
            q, args = self._sql.count, ()
        else:
            q, args = self._sql.count_tenant, (tenant,)
        row = await self._call(lambda c: c.execute(q, args).fetchone())
        return int(row[0]) if row else 0

    async def tenant_count(self) -> int:
        q = self._sql.tenant_count
        row = await self._call(lambda c: c.execute(q).fetchone())
        return int(row[0]) if row else 0

    # ---- writes -------------------------------------------------------------

    async def insert(self, entry: NewEntry) -> None:
        e = entry
        args = (e.entry_id, e.tenant, e.ctx, e.exact, e.text, np.ascontiguousarray(e.vector, dtype=np.float32),
                e.answer, e.model, e.tier, e.created_at, e.saved_nano_usd, e.prompt_tokens,
                e.completion_tokens, e.expires_at, e.created_at)  # fmt: skip
        register = e.tenant not in self._registered

        def write(c: psycopg.Connection[Any]) -> None:
            with c.transaction():
                c.execute(self._sql.insert, args)
                if register:
                    c.execute(self._sql.add_tenant, (e.tenant,))

        await self._call(write)
        self._registered.add(e.tenant)
        self._since_count[e.tenant] += 1

    async def touch(self, entry: Entry, now: float) -> None:
        q = self._sql.touch
        await self._call(lambda c: c.execute(q, (now, entry.entry_id, now)))

    async def remove(self, entries: list[Entry]) -> int:
        by_tenant: defaultdict[str, list[str]] = defaultdict(list)
        for entry in entries:
            by_tenant[entry.tenant].append(entry.entry_id)
        q = self._sql.remove
        removed = 0
        for tenant, ids in by_tenant.items():
            removed += await self._call(lambda c, t=tenant, i=ids: c.execute(q, (t, i)).rowcount)  # type: ignore[misc]
        return removed

    async def remove_tenant(self, tenant: str | None) -> int:
        args: tuple[Any, ...]
        if tenant is None:
            q, args = self._sql.remove_all, ()
        else:
            q, args = self._sql.remove_tenant, (tenant,)
        return await self._call(lambda c: c.execute(q, args).rowcount)

    async def remove_expired(self, now: float, tenant: str | None = None) -> int:
        args: tuple[Any, ...]
        if tenant is None:
            q, args = self._sql.remove_expired, (now, _EXPIRED_BATCH)
        else:
            q, args = self._sql.remove_expired_tenant, (tenant, now, _EXPIRED_BATCH)
        return await self._call(lambda c: c.execute(q, args).rowcount)

    async def evict_lru(self, tenant: str, capacity: int) -> int:
        # Counting 100k rows costs milliseconds, so a large tenant is counted
        # every 64th store of this process: capacity is then exceeded by at
        # most 64 entries per replica until the next count removes them.
        if self._since_count[tenant] < min(64, max(1, capacity // 1000)):
            return 0
        self._since_count[tenant] = 0
        count_q, evict_q = self._sql.count_tenant, self._sql.evict

        def evict(c: psycopg.Connection[Any]) -> int:
            row = c.execute(count_q, (tenant,)).fetchone()
            excess = (int(row[0]) if row else 0) - capacity
            return c.execute(evict_q, (tenant, excess)).rowcount if excess > 0 else 0

        return await self._call(evict)


class PgReceipts:
    """Wrong-hit receipts in the shared database: a hit served by one replica
    is reportable through any other, and ``mark_reported`` counts it once
    across all of them (one conditional UPDATE)."""

    _PRUNE_EVERY = 100  # saves between deletions of receipts past the window

    def __init__(self, backend: PgvectorBackend) -> None:
        self._backend = backend
        self._sql = backend._sql
        self._saves = 0

    async def save(self, tenant: str, request_id: str, receipt: Receipt, oldest_allowed: float) -> None:
        r, prune = receipt, self._saves % self._PRUNE_EVERY == 0
        self._saves += 1

        def write(c: psycopg.Connection[Any]) -> None:
            c.execute(self._sql.save_receipt, (tenant, request_id, r.key_id, r.entry_id, r.at))
            if prune:
                c.execute(self._sql.prune_receipts, (oldest_allowed,))

        await self._backend._call(write)

    async def load(self, tenant: str, request_id: str) -> Receipt | None:
        q = self._sql.load_receipt
        row = await self._backend._call(lambda c: c.execute(q, (tenant, request_id)).fetchone())
        return Receipt(str(row[0]), str(row[1]), float(row[2]), bool(row[3])) if row is not None else None

    async def mark_reported(self, tenant: str, request_id: str) -> bool:
        q = self._sql.mark_reported
        return bool(await self._backend._call(lambda c: c.execute(q, (tenant, request_id)).rowcount == 1))

    def close(self) -> None:
        return None  # the backend owns the pool


def _reason(exc: BaseException) -> str:
    # The first line only: psycopg's message names host and port, never the password.
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
