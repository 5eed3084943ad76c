"""Wrong-hit feedback: which key received which cached answer, and a per-key
rate limit on reports.

A hit looked up with a request id and key id is remembered for
``window_s``; a report for that request id is accepted only from the same
tenant and key, once (a repeat is acknowledged, not counted again), and each
key may report at most ``per_minute`` times a minute (token bucket, burst of
the same size). With a ``path`` the receipts are also written to SQLite
(``receipts.sqlite3`` in the cache's data dir), so a report after a cache
restart is still authorized; without one (tests, ephemeral caches) they live
in memory only. No gRPC here.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from rationer.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from rationer.platform.clock import Clock

MAX_ID_CHARS = 128
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS receipts (tenant TEXT NOT NULL, request_id TEXT NOT NULL, key_id TEXT NOT NULL, "
    "entry_id TEXT NOT NULL, at REAL NOT NULL, reported INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tenant, request_id))"
)


@dataclass
class _Hit:
    key_id: str
    entry_id: str
    at: float
    reported: bool = False


@dataclass(frozen=True)
class Report:
    entry_id: str
    already_reported: bool


def _id(value: str, name: str) -> str:
    if not value or not value.strip():
        raise InvalidArgument(f"{name} is empty; send the {name} the hit was served under")
    if len(value) > MAX_ID_CHARS or not value.isprintable():
        raise InvalidArgument(f"{name} must be at most {MAX_ID_CHARS} printable characters")
    return value


class FeedbackBook:
    def __init__(self, clock: Clock, *, window_s: float = 24 * 3600.0, per_minute: int = 10,
                 max_hits: int = 200_000, path: Path | None = None) -> None:  # fmt: skip
        self._clock = clock
        self._window_s = window_s
        self._rate = per_minute / 60.0
        self._burst = float(per_minute)
        self._max_hits = max_hits
        self._hits: OrderedDict[tuple[str, str], _Hit] = OrderedDict()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # (tokens, at)
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def record(self, tenant: str, request_id: str, key_id: str, entry_id: str) -> None:
        if not request_id or not key_id or max(len(request_id), len(key_id)) > MAX_ID_CHARS:
            return  # the caller did not ask to be able to report this hit (or sent ids report() refuses)
        now = self._clock.time()
        key = (tenant, request_id)
        self._hits.pop(key, None)
        self._hits[key] = _Hit(key_id, entry_id, now)
        oldest_allowed = now - self._window_s
        while len(self._hits) > self._max_hits or next(iter(self._hits.values())).at < oldest_allowed:
            self._hits.popitem(last=False)
        if self._db is not None:
            self._db.execute("INSERT OR REPLACE INTO receipts VALUES (?, ?, ?, ?, ?, 0)",
                             (tenant, request_id, key_id, entry_id, now))  # fmt: skip
            self._db.execute("DELETE FROM receipts WHERE at < ?", (oldest_allowed,))

    def report(self, tenant: str, key_id: str, request_id: str) -> Report:
        request_id = _id(request_id, "request_id")
        key_id = _id(key_id, "key_id")
        now = self._clock.time()
        self._take_token(tenant, key_id, now)
        hit = self._hits.get((tenant, request_id)) or self._persisted(tenant, request_id)
        if hit is None or hit.at < now - self._window_s:
            raise NotFound(
                f"no cached answer was served for request {request_id!r} to this tenant in the last "
                f"{self._window_s / 3600:g} h; only answers from the cache can be reported"
            )
        if hit.key_id != key_id:
            raise PermissionDenied(
                f"request {request_id!r} was answered for another API key; only that key may report it"
            )
        first = not hit.reported
        hit.reported = True
        if self._db is not None and first:
            sql = "UPDATE receipts SET reported = 1 WHERE tenant = ? AND request_id = ?"
            self._db.execute(sql, (tenant, request_id))
        return Report(entry_id=hit.entry_id, already_reported=not first)

    def _persisted(self, tenant: str, request_id: str) -> _Hit | None:
        """A receipt written before this process started (memory holds only this run's)."""
        if self._db is None:
            return None
        sql = "SELECT key_id, entry_id, at, reported FROM receipts WHERE tenant = ? AND request_id = ?"
        row = self._db.execute(sql, (tenant, request_id)).fetchone()
        if row is None:
            return None
        hit = _Hit(str(row[0]), str(row[1]), float(row[2]), bool(row[3]))
        self._hits[(tenant, request_id)] = hit
        return hit

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
