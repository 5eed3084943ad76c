"""A durable list of settlements the ledger has not confirmed yet.

The model has answered, so the call must be billed; the only copy of its
usage is in this process until the ledger takes it. Each settlement is
written here before the first attempt and deleted once the ledger confirms,
so a router that crashes, or stops during a long ledger outage, replays it
on its next start. Replays are safe because Commit is idempotent on the
reservation id and RecordCacheHit on the record id of the served answer.

Each row holds one typed record (``services/ledger/calls.py``): its kind,
from the record's class, and its fields as JSON (``to_record``'s form). That is the layout earlier
runs wrote (a kind and the call's keyword arguments), so a journal left by
one replays in the next; a field an older row lacks takes its default.

SQLite in WAL mode with synchronous=NORMAL: a committed row survives a crash
of this process (it is in the WAL file); only a power loss can drop the last
few. One insert and one delete cost tens of microseconds, so they run inline.

A file journal belongs to one live process at a time (``journal_lock.py``):
opening one that another live router holds raises ``JournalInUse``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import structlog

from rationer.errors import FailedPrecondition
from rationer.platform.clock import SYSTEM_CLOCK, Clock
from services.ledger.calls import SettlementCall, from_record
from services.router.journal_lock import JournalLock

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PendingSettlement:
    entry_id: int
    call: SettlementCall
    created_at: float  # unix seconds


class SettlementJournal:
    """Pending settlements; ``path=None`` keeps them in memory only."""

    def __init__(self, path: Path | None = None, *, clock: Clock = SYSTEM_CLOCK, lock_wait_s: float = 0.0) -> None:
        self.path = path
        self._clock = clock
        self._file_lock: JournalLock | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Before SQLite opens the file: a live owner's WAL is never touched.
            self._file_lock = JournalLock(path)
            self._file_lock.acquire(wait_s=lock_wait_s)
        try:
            self._db = self._open(path)
        except sqlite3.DatabaseError as exc:
            if self._file_lock is not None:
                self._file_lock.release()
            raise FailedPrecondition(f"{path} is not a settlement journal the router can open: {exc}") from None
        # Background settle tasks and the request path share one connection.
        self._lock = threading.Lock()

    @staticmethod
    def _open(path: Path | None) -> sqlite3.Connection:
        db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None, check_same_thread=False)
        if path is not None:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " kind TEXT NOT NULL, args TEXT NOT NULL, created_at REAL NOT NULL)"
        )
        return db

    @property
    def durable(self) -> bool:
        return self.path is not None

    def add(self, call: SettlementCall) -> int:
        # Every field is a scalar, so the instance's own dict is the record's
        # fields; to_record's asdict deep-copies each one, measurable on the hot path.
        fields = vars(call)
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO pending (kind, args, created_at) VALUES (?, ?, ?)",
                (call.KIND, json.dumps(fields, separators=(",", ":")), self._clock.time()),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def done(self, entry_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM pending WHERE id = ?", (entry_id,))

    def pending(self) -> list[PendingSettlement]:
        with self._lock:
            rows = self._db.execute("SELECT id, kind, args, created_at FROM pending ORDER BY id").fetchall()
        out = []
        for entry_id, kind, fields, created_at in rows:
            call = _record(int(entry_id), str(kind), str(fields))
            if call is not None:
                out.append(PendingSettlement(int(entry_id), call, float(created_at)))
        return out

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if self._file_lock is not None:
            self._file_lock.release()

    def remove(self) -> None:
        """Close and delete the journal's files; only for an empty journal (a drained or adopted one)."""
        if len(self):
            raise ValueError(f"the journal {self.path} still holds {len(self)} settlements")
        with self._lock:
            self._db.close()  # checkpoints the WAL into the (empty) main file
        if self.path is not None:
            for suffix in ("", "-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        if self._file_lock is not None:
            self._file_lock.release(remove=True)


def _record(entry_id: int, kind: str, fields: str) -> SettlementCall | None:
    """The typed record of a row; None (logged, the row kept for an operator) if this version cannot read it."""
    try:
        return from_record({"kind": kind, "fields": json.loads(fields)})
    except (KeyError, TypeError, ValueError) as exc:
        log.error("a journaled settlement this version cannot read stays in the journal", entry_id=entry_id,
                  kind=kind, error=repr(exc))  # fmt: skip
        return None
