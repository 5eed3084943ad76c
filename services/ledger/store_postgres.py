"""PostgreSQL driver: psycopg 3 async pool, one transaction per operation.

Correctness across replicas comes from the database: operations lock the
budget rows they check (``SELECT ... FOR UPDATE`` in id order, so lock order is
global and deadlock-free). Concurrent commits share WAL flushes through
PostgreSQL's own group commit.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from rationer.errors import Unavailable
from services.ledger.sql.common import POSTGRES, Op
from services.ledger.store import OpFactory, migration_files

log = structlog.get_logger(__name__)

T = TypeVar("T")
_RETRYABLE = (pg_errors.UniqueViolation, pg_errors.SerializationFailure, pg_errors.DeadlockDetected)
_MIGRATION_LOCK = 74_017_001


class PostgresStore:
    dialect = POSTGRES

    def __init__(self, dsn: str, *, min_size: int = 2, max_size: int = 16, timeout_s: float = 3.0):
        self._dsn = dsn
        self._timeout = timeout_s
        self._pool = AsyncConnectionPool(
            dsn, min_size=min_size, max_size=max_size, open=False, timeout=timeout_s,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout_s))},
        )  # fmt: skip
        self._sql: dict[str, str] = {}
        self._checking = False

    async def start(self) -> None:
        try:
            await self._pool.open(wait=True, timeout=self._timeout)
        except PoolTimeout as exc:
            raise Unavailable(f"PostgreSQL at {self._safe_dsn()} is unreachable: {exc}") from exc
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
            cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            row = await cur.fetchone()
            have = int(row[0]) if row else 0
            for version, sql in migration_files():
                if version > have:
                    await conn.execute(sql.encode())
                    await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                    log.info("applied migration", version=version, backend="postgres")

    async def close(self) -> None:
        await self._pool.close()

    def _safe_dsn(self) -> str:
        return self._dsn.split("@")[-1]

    def _translate(self, sql: str) -> str:
        out = self._sql.get(sql)
        if out is None:
            out = self._sql[sql] = sql.replace("?", "%s")
        return out

    async def _drive(self, conn: psycopg.AsyncConnection[Any], op: Op[T]) -> T:
        cur = conn.cursor()
        try:
            sql, params = next(op)
            while True:
                await cur.execute(self._translate(sql), params)
                rows = await cur.fetchall() if cur.description is not None else []
                sql, params = op.send(rows)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _run(self, factory: OpFactory[T]) -> T:
        for attempt in range(4):
            try:
                async with self._pool.connection() as conn, conn.transaction():
                    return await self._drive(conn, factory())
            except _RETRYABLE:
                if attempt == 3:
                    raise
                await asyncio.sleep(0.001 * (attempt + 1))
            except (psycopg.OperationalError, PoolTimeout) as exc:
                self._schedule_check()
                raise Unavailable(
                    f"ledger database (PostgreSQL at {self._safe_dsn()}) is unavailable: "
                    f"{str(exc).strip() or type(exc).__name__}; safe to retry"
                ) from exc
        raise AssertionError("unreachable")

    def _schedule_check(self) -> None:
        # After a failure, sweep the pool for other broken connections so the
        # service recovers in one retry rather than one failure per connection.
        if self._checking:
            return
        self._checking = True

        async def check() -> None:
            try:
                await self._pool.check()
            except Exception as exc:
                log.warning("pool check failed", error=str(exc))
            finally:
                self._checking = False

        asyncio.get_running_loop().create_task(check())

    async def write(self, factory: OpFactory[T]) -> T:
        return await self._run(factory)

    async def read(self, factory: OpFactory[T]) -> T:
        return await self._run(factory)
