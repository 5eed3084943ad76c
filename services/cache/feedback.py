"""Wrong-hit feedback: which key received which cached answer, and a per-key
rate limit on reports.

A hit looked up with a request id and key id is remembered for
``window_s``; a report for that request id is accepted only from the same
tenant and key, once (a repeat is acknowledged, not counted again), and each
key may report at most ``per_minute`` times a minute (token bucket, burst of
the same size). With a receipt log the receipts are written there instead of
memory: SQLite (``receipts.sqlite3`` in the cache's data dir), so a report
after a cache restart is still authorized, or the shared backend's database
(``PgvectorBackend.receipts``), so a hit served by one cache replica can be
reported through another, and counted once across all of them. Without one
(tests, ephemeral caches) they live in memory only. No gRPC here.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rationer.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from rationer.platform.clock import Clock

MAX_ID_CHARS = 128
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS receipts (tenant TEXT NOT NULL, request_id TEXT NOT NULL, key_id TEXT NOT NULL, "
    "entry_id TEXT NOT NULL, at REAL NOT NULL, reported INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tenant, request_id))"
)


@dataclass
class Receipt:
    key_id: str
    entry_id: str
    at: float
    reported: bool = False


@dataclass(frozen=True)
class Report:
    entry_id: str
    already_reported: bool


class ReceiptLog(Protocol):
    """Where receipts live when not (only) in memory."""

    async def save(self, tenant: str, request_id: str, receipt: Receipt, oldest_allowed: float) -> None:
        """Write (or replace) the receipt; drop those older than ``oldest_allowed``."""

    async def load(self, tenant: str, request_id: str) -> Receipt | None: ...

    async def mark_reported(self, tenant: str, request_id: str) -> bool:
        """Mark it reported; True only for the call that changed it (atomic across processes)."""

    def close(self) -> None: ...


class SqliteReceipts:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    async def save(self, tenant: str, request_id: str, receipt: Receipt, oldest_allowed: float) -> None:
        r = receipt
        self._db.execute("INSERT OR REPLACE INTO receipts VALUES (?, ?, ?, ?, ?, 0)",
                         (tenant, request_id, r.key_id, r.entry_id, r.at))  # fmt: skip
        self._db.execute("DELETE FROM receipts WHERE at < ?", (oldest_allowed,))

    async def load(self, tenant: str, request_id: str) -> Receipt | None:
        sql = "SELECT key_id, entry_id, at, reported FROM receipts WHERE tenant = ? AND request_id = ?"
        row = self._db.execute(sql, (tenant, request_id)).fetchone()
        return Receipt(str(row[0]), str(row[1]), float(row[2]), bool(row[3])) if row is not None else None

    async def mark_reported(self, tenant: str, request_id: str) -> bool:
        sql = "UPDATE receipts SET reported = 1 WHERE tenant = ? AND request_id = ? AND reported = 0"
        return self._db.execute(sql, (tenant, request_id)).rowcount == 1

    def close(self) -> None:
        self._db.close()


def _id(value: str, name: str) -> str:
    if not value or not value.strip():
        raise InvalidArgument(f"{name} is empty; send the {name} the hit was served under")
    if len(value) > MAX_ID_CHARS or not value.isprintable():
        raise InvalidArgument(f"{name} must be at most {MAX_ID_CHARS} printable characters")
    return value


class FeedbackBook:
    def __init__(self, clock: Clock, *, window_s: float = 24 * 3600.0, per_minute: int = 10,
                 max_hits: int = 200_000, path: Path | None = None, log: ReceiptLog | None = None) -> None:  # fmt: skip
        self._clock = clock
        self._window_s = window_s
        self._rate = per_minute / 60.0
        self._burst = float(per_minute)
        self._max_hits = max_hits
        self._hits: OrderedDict[tuple[str, str], Receipt] = OrderedDict()  # without a log only
        # Per process even with a shared log: a replica's limit, not the fleet's.
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # (tokens, at)
        self._log: ReceiptLog | None = log or (SqliteReceipts(path) if path is not None else None)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    async def record(self, tenant: str, request_id: str, key_id: str, entry_id: str) -> None:
        if not request_id or not key_id or max(len(request_id), len(key_id)) > MAX_ID_CHARS:
            return  # the caller did not ask to be able to report this hit (or sent ids report() refuses)
        now = self._clock.time()
        oldest_allowed = now - self._window_s
        if self._log is not None:
            await self._log.save(tenant, request_id, Receipt(key_id, entry_id, now), oldest_allowed)
            return
        key = (tenant, request_id)
        self._hits.pop(key, None)
        self._hits[key] = Receipt(key_id, entry_id, now)
        while len(self._hits) > self._max_hits or next(iter(self._hits.values())).at < oldest_allowed:
            self._hits.popitem(last=False)

    async def report(self, tenant: str, key_id: str, request_id: str) -> Report:
        request_id = _id(request_id, "request_id")
        key_id = _id(key_id, "key_id")
        now = self._clock.time()
        self._take_token(tenant, key_id, now)
        if self._log is not None:
            hit = await self._log.load(tenant, request_id)
        else:
            hit = self._hits.get((tenant, request_id))
        if hit is None or hit.at < now - self._window_s:
            raise NotFound(
                f"no cached answer was served for request {request_id!r} to this tenant in the last "
                f"{self._window_s / 3600:g} h; only answers from the cache can be reported"
            )
        if hit.key_id != key_id:
            raise PermissionDenied(
                f"request {request_id!r} was answered for another API key; only that key may report it"
            )
        if self._log is not None:
            first = await self._log.mark_reported(tenant, request_id)
        else:
            first, hit.reported = not hit.reported, True
        return Report(entry_id=hit.entry_id, already_reported=not first)

    def _take_token(self, tenant: str, key_id: str, now: float) -> None:
        tokens, at = self._buckets.get((tenant, key_id), (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            wait = (1.0 - tokens) / self._rate
            raise ResourceExhausted(
                f"this key has sent {self._burst:g} wrong-hit reports within a minute; retry in {wait:.0f} s",
                limit_id="cache_feedback", retry_after_s=wait,
            )  # fmt: skip
        self._buckets[(tenant, key_id)] = (tokens - 1.0, now)
