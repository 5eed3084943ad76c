"""Fake ports of ``Ledger``: a store with no threads or files, a rate limiter that records.

``MemoryStore`` runs the real SQL operations on one in-memory SQLite
connection, inline on the event loop, each write in its own transaction (a
raised domain error rolls it back, as the real drivers do): the money rules
under test are the SQL, so a store that skipped it would test nothing.
"""

from __future__ import annotations

import sqlite3
from typing import TypeVar

from services.ledger.ratelimit import RateCheck, RateDenial
from services.ledger.sql.common import SQLITE
from services.ledger.store import OpFactory, drive_sync, migration_files

T = TypeVar("T")


class MemoryStore:
    """The ``Store`` port over ``sqlite3.connect(":memory:")``."""

    dialect = SQLITE

    def __init__(self) -> None:
        self._conn = sqlite3.connect(":memory:", isolation_level=None)
        self._conn.execute("PRAGMA foreign_keys=ON")
        self.writes = 0

    async def start(self) -> None:
        for _, sql in migration_files():
            self._conn.executescript(f"BEGIN;\n{sql}\nCOMMIT;")

    async def close(self) -> None:
        self._conn.close()

    async def write(self, factory: OpFactory[T]) -> T:
        self._conn.execute("BEGIN")
        try:
            out = drive_sync(self._conn, factory())
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        self.writes += 1
        return out

    async def read(self, factory: OpFactory[T]) -> T:
        return drive_sync(self._conn, factory())


class RecordingLimiter:
    """The ``RateLimiter`` port: admits everything except the limit ids in ``deny``; records every call."""

    def __init__(self, deny: frozenset[str] = frozenset()) -> None:
        self.deny = deny
        self.acquired: list[RateCheck] = []
        self.refunded: list[RateCheck] = []

    async def acquire(self, checks: list[RateCheck]) -> RateDenial | None:
        for c in checks:
            if c.limit_id in self.deny:
                return RateDenial(c.limit_id, 12.5)
        self.acquired += checks
        return None

    async def refund(self, checks: list[RateCheck]) -> None:
        self.refunded += checks

    async def close(self) -> None:
        return None
