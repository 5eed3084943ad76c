"""Durable entries: SQLite in WAL mode holds every entry with its vector.

The FAISS indexes are derived state: rebuilt from this table at start, or
loaded from a snapshot whose recorded ``generation`` equals the table's (every
mutation bumps the generation in the same transaction, so a snapshot taken
before a later write, or before a crash, is never trusted). A crash mid-write
rolls the SQLite transaction back; nothing half-written survives.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rationer.embedding import DIM

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    ctx TEXT NOT NULL,
    exact TEXT NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL,
    answer TEXT NOT NULL,
    model TEXT NOT NULL,
    tier TEXT NOT NULL,
    created_at REAL NOT NULL,
    saved_nano_usd INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    last_used REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS entries_key ON entries (tenant, ctx, exact);
CREATE INDEX IF NOT EXISTS entries_lru ON entries (tenant, last_used);
CREATE INDEX IF NOT EXISTS entries_expiry ON entries (expires_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Entry:
    row_id: int
    entry_id: str
    tenant: str
    ctx: str
    text: str
    answer: str
    model: str
    tier: str
    created_at: float
    saved_nano_usd: int
    prompt_tokens: int
    completion_tokens: int
    expires_at: float


@dataclass(frozen=True)
class NewEntry:
    entry_id: str
    tenant: str
    ctx: str
    exact: str
    text: str
    vector: npt.NDArray[np.float32]
    answer: str
    model: str
    tier: str
    created_at: float
    saved_nano_usd: int
    prompt_tokens: int
    completion_tokens: int
    expires_at: float


_ENTRY_COLS = (
    "id, entry_id, tenant, ctx, text, answer, model, tier, created_at, saved_nano_usd, "
    "prompt_tokens, completion_tokens, expires_at"
)


def _entry(row: tuple[object, ...]) -> Entry:
    return Entry(*row)  # type: ignore[arg-type]


class EntryStore:
    """All SQL lives here. Not thread-safe: the cache calls it from one thread."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        target = str(path) if path is not None else ":memory:"
        self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def generation(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    def _bump(self) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('generation', '1') ON CONFLICT(key) "
            "DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)"
        )

    def insert(self, e: NewEntry) -> tuple[int, Entry | None]:
        """Insert ``e``, replacing an entry with the same key; returns (row id, replaced)."""
        with self._tx():
            old = self._db.execute(
                f"SELECT {_ENTRY_COLS} FROM entries WHERE tenant=? AND ctx=? AND exact=?",
                (e.tenant, e.ctx, e.exact),
            ).fetchone()
            if old is not None:
                self._db.execute("DELETE FROM entries WHERE id=?", (old[0],))
            cur = self._db.execute(
                "INSERT INTO entries (entry_id, tenant, ctx, exact, text, vector, answer, model, tier, "
                "created_at, saved_nano_usd, prompt_tokens, completion_tokens, expires_at, last_used) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    e.entry_id, e.tenant, e.ctx, e.exact, e.text,
                    np.ascontiguousarray(e.vector, dtype=np.float32).tobytes(), e.answer, e.model, e.tier,
                    e.created_at, e.saved_nano_usd, e.prompt_tokens, e.completion_tokens, e.expires_at,
                    e.created_at,
                ),
            )  # fmt: skip
            self._bump()
        row_id = cur.lastrowid
        assert row_id is not None
        return row_id, (_entry(old) if old is not None else None)

    def exact(self, tenant: str, ctx: str, exact: str, now: float) -> Entry | None:
        row = self._db.execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE tenant=? AND ctx=? AND exact=? AND expires_at>?",
            (tenant, ctx, exact, now),
        ).fetchone()
        return _entry(row) if row else None

    def get(self, row_id: int) -> Entry | None:
        row = self._db.execute(f"SELECT {_ENTRY_COLS} FROM entries WHERE id=?", (row_id,)).fetchone()
        return _entry(row) if row else None

    def by_entry_id(self, entry_id: str) -> Entry | None:
        row = self._db.execute(f"SELECT {_ENTRY_COLS} FROM entries WHERE entry_id=?", (entry_id,)).fetchone()
        return _entry(row) if row else None

    def touch(self, row_id: int, now: float) -> None:
        # LRU bookkeeping only: the index is unaffected, so no generation bump.
        self._db.execute("UPDATE entries SET last_used=? WHERE id=?", (now, row_id))

    def delete(self, row_ids: list[int]) -> list[Entry]:
        if not row_ids:
            return []
        removed: list[Entry] = []
        with self._tx():
            for row_id in row_ids:
                row = self._db.execute(f"SELECT {_ENTRY_COLS} FROM entries WHERE id=?", (row_id,)).fetchone()
                if row is not None:
                    self._db.execute("DELETE FROM entries WHERE id=?", (row_id,))
                    removed.append(_entry(row))
            self._bump()
        return removed

    def expired(self, now: float, tenant: str | None = None, limit: int = 1000) -> list[int]:
        if tenant is None:
            rows = self._db.execute("SELECT id FROM entries WHERE expires_at<=? LIMIT ?", (now, limit))
        else:
            rows = self._db.execute(
                "SELECT id FROM entries WHERE tenant=? AND expires_at<=? LIMIT ?", (tenant, now, limit)
            )
        return [int(r[0]) for r in rows]

    def lru_victims(self, tenant: str, capacity: int) -> list[int]:
        """Least recently used rows beyond the tenant's capacity."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM entries WHERE tenant=?", (tenant,)).fetchone()
        excess = int(count) - capacity
        if excess <= 0:
            return []
        rows = self._db.execute(
            "SELECT id FROM entries WHERE tenant=? ORDER BY last_used ASC, id ASC LIMIT ?", (tenant, excess)
        )
        return [int(r[0]) for r in rows]

    def tenant_rows(self, tenant: str | None) -> list[int]:
        if tenant is None:
            return [int(r[0]) for r in self._db.execute("SELECT id FROM entries")]
        return [int(r[0]) for r in self._db.execute("SELECT id FROM entries WHERE tenant=?", (tenant,))]

    def count(self, tenant: str | None = None) -> int:
        if tenant is None:
            (n,) = self._db.execute("SELECT COUNT(*) FROM entries").fetchone()
        else:
            (n,) = self._db.execute("SELECT COUNT(*) FROM entries WHERE tenant=?", (tenant,)).fetchone()
        return int(n)

    def tenant_count(self) -> int:
        (n,) = self._db.execute("SELECT COUNT(DISTINCT tenant) FROM entries").fetchone()
        return int(n)

    def vectors(self) -> Iterator[tuple[int, str, str, npt.NDArray[np.float32]]]:
        """Every (row id, tenant, ctx, vector), for rebuilding the indexes."""
        for row_id, tenant, ctx, blob in self._db.execute("SELECT id, tenant, ctx, vector FROM entries"):
            vec = np.frombuffer(blob, dtype=np.float32)
            if vec.shape != (DIM,):
                continue  # cannot happen through insert(); skip rather than crash the start
            yield int(row_id), str(tenant), str(ctx), vec

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
