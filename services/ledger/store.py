"""Storage drivers behind one interface: SQLite (embedded default) and PostgreSQL.

Both run the same sans-IO operations (see services.ledger.sql). A caller passes a
zero-argument *factory* so a driver can re-run an operation from scratch when
the database asks for a retry (PostgreSQL unique-key races).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from rationer.errors import Unavailable
from services.ledger.sql.common import SQLITE, Dialect, Op

log = structlog.get_logger(__name__)

T = TypeVar("T")
OpFactory = Callable[[], Op[T]]
MIGRATIONS = Path(__file__).with_name("migrations")


def migration_files() -> list[tuple[int, str]]:
    """(version, sql) of every ``NNNN_name.sql`` file, in order."""
    out = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        out.append((int(path.name.split("_", 1)[0]), path.read_text(encoding="utf-8")))
    return out


class Store(Protocol):
    dialect: Dialect

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def write(self, factory: OpFactory[T]) -> T: ...
    async def read(self, factory: OpFactory[T]) -> T: ...


def drive_sync(conn: sqlite3.Connection, op: Op[T]) -> T:
    try:
        sql, params = next(op)
        while True:
            rows = conn.execute(sql, params).fetchall()
            sql, params = op.send(rows)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


_Item = tuple[OpFactory[Any], "asyncio.Future[Any]"]


class SQLiteStore:
    """WAL-mode SQLite with one writer thread doing group commit.

    The writer drains its queue, runs every queued operation inside one
    transaction (each under its own SAVEPOINT, so one failing operation rolls
    back alone), commits once, and only then acknowledges the callers. Single
    writer = serializable by construction: no two Authorize calls interleave.
    Reads run on a small pool of reader connections (WAL readers never block
    the writer).
    """

    dialect = SQLITE

    def __init__(
        self, path: Path, *, synchronous: str = "FULL", max_batch: int = 256, readers: int = 2, busy_s: float = 10.0
    ):
        self._path = Path(path)
        self._busy_s = busy_s
        self._sync = synchronous
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="ledger-sqlite-read")
        self._local = threading.local()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=self._busy_s)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._sync}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _migrate(self) -> None:
        conn = self._connect()
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
            have = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            for version, sql in migration_files():
                if version > have:
                    conn.executescript(
                        f"BEGIN;\n{sql}\nINSERT INTO schema_version (version) VALUES ({version});\nCOMMIT;"
                    )
                    log.info("applied migration", version=version, backend="sqlite")
        finally:
            conn.close()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._migrate)
        self._thread = threading.Thread(target=self._writer, name="ledger-sqlite-writer", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._readers.shutdown(wait=True)

    async def write(self, factory: OpFactory[T]) -> T:
        assert self._loop is not None, "start() the store first"
        fut: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((factory, fut))
        return await fut

    async def read(self, factory: OpFactory[T]) -> T:
        assert self._loop is not None, "start() the store first"
        return await self._loop.run_in_executor(self._readers, self._read_sync, factory)

    def _read_sync(self, factory: OpFactory[T]) -> T:
        try:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._connect()
            conn.execute("BEGIN")  # one snapshot for the whole operation
            try:
                return drive_sync(conn, factory())
            finally:
                conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"ledger database {self._path} is unavailable: {exc}") from exc

    def _writer(self) -> None:
        conn: sqlite3.Connection | None = None
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                conn = conn or self._connect()
                results = self._run_batch(conn, batch)
            except Exception as exc:
                # This thread must never die: every queued and later write
                # would then wait forever. Fail this batch, reconnect next time.
                log.error("ledger writer failed; reconnecting", error=str(exc), batch=len(batch))
                err = Unavailable(f"ledger database {self._path} is unavailable: {exc}; retry")
                results = [(fut, None, err) for _, fut in batch]
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            assert self._loop is not None
            self._loop.call_soon_threadsafe(_resolve, results)
        if conn is not None:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[tuple[Any, Any, Any]]:
        out: list[tuple[Any, Any, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for factory, fut in batch:
                conn.execute("SAVEPOINT op")
                try:
                    result = drive_sync(conn, factory())
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    if isinstance(exc, sqlite3.OperationalError):
                        exc = Unavailable(f"ledger database {self._path} is unavailable: {exc}")
                    out.append((fut, None, exc))
                else:
                    out.append((fut, result, None))
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # Nothing of this batch is durable: fail every caller, none is acknowledged.
            log.error("group commit failed", error=str(exc), batch=len(batch))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            err = Unavailable(f"ledger database {self._path} could not commit: {exc}; retry")
            return [(fut, None, err) for _, fut in batch]
        return out


def _resolve(results: list[tuple[Any, Any, Any]]) -> None:
    for fut, result, exc in results:
        if fut.done():
            continue  # the caller went away; the operation still committed
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
