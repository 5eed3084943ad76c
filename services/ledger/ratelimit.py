"""Requests- and tokens-per-minute limits (GCRA), in-process or shared in Redis.

GCRA (the generic cell rate algorithm) keeps one number per limit, the
theoretical arrival time (TAT). A cost of ``n`` units advances it by
``n * 60s / limit``; a request is allowed when the advanced TAT is at most one
minute ahead of now. It allows a full minute's worth as a burst, then smooths
to the configured rate, never admits more than ``limit`` per rolling minute
after the burst, and needs O(1) state and one round trip: no sorted sets of
timestamps as a sliding-window log would. Several limits (key rpm/tpm, team
rpm/tpm) are checked and consumed together atomically: all or nothing.

A refund moves the TAT back by the refunded units, never before now, so
giving back capacity can never create more than a fresh minute's burst. The
ledger refunds what a request did not use: everything when the budget check
denies it or an idempotent retry replays it, and on Commit or Release the
tokens the estimate reserved but the call did not use.

The in-process limiter (no Redis: one ledger process) keeps its TATs in the
ledger's own database too (table ``rate_limit_state``), written behind the
request path through the store and loaded on start, so a restarted ledger
still knows the minute it was in. More than one ledger process must share
Redis: each process's in-process state is its own.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import redis.asyncio as aioredis
import redis.exceptions
import structlog

from rationer.errors import RationerError, Unavailable
from rationer.platform.clock import SYSTEM_CLOCK, Clock
from services.ledger.sql.common import Op
from services.ledger.store import Store

log = structlog.get_logger(__name__)

PERIOD_US = 60_000_000
_SAVE_ROWS = 200  # rows per INSERT (2 parameters each; SQLite allows 999+)


@dataclass(frozen=True)
class RateCheck:
    limit_id: str  # e.g. "rpm:key:k_123", "tpm:team:acme/eng"
    per_minute: int
    cost: int


@dataclass(frozen=True)
class RateDenial:
    limit_id: str
    retry_after_s: float  # inf when the cost exceeds the whole per-minute allowance


class RateLimiter(Protocol):
    async def acquire(self, checks: list[RateCheck]) -> RateDenial | None: ...
    async def refund(self, checks: list[RateCheck]) -> None: ...
    async def close(self) -> None: ...


def _interval_us(per_minute: int) -> float:
    return PERIOD_US / per_minute


def save_state(items: dict[str, int]) -> Op[None]:
    rows = list(items.items())
    for i in range(0, len(rows), _SAVE_ROWS):
        chunk = rows[i : i + _SAVE_ROWS]
        yield (
            "INSERT INTO rate_limit_state (limit_id, tat) VALUES " + ", ".join("(?, ?)" for _ in chunk)
            + " ON CONFLICT (limit_id) DO UPDATE SET tat = excluded.tat",
            tuple(x for row in chunk for x in row),
        )  # fmt: skip


def load_state(now_us: int) -> Op[dict[str, float]]:
    """The TATs still ahead of now; the rest are dropped (they allow a full burst anyway)."""
    yield ("DELETE FROM rate_limit_state WHERE tat <= ?", (now_us,))
    rows = yield ("SELECT limit_id, tat FROM rate_limit_state", ())
    return {str(r[0]): float(r[1]) for r in rows}


class InProcessRateLimiter:
    """Single-process GCRA. Atomic because it never awaits between check and set.

    With a ``store``, every TAT it changes is written to the ledger database
    off the request path: one write in flight at a time carries every change
    made since the last one (with SQLite's group commit it usually rides in
    the same transaction as the Authorize that caused it). ``close`` flushes
    what is left, so a clean restart loses nothing; a crash may lose the last
    few milliseconds of consumption, never more than one write's worth.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK, store: Store | None = None) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}
        self._store = store
        self._dirty: dict[str, int] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def load(self) -> int:
        """Read the persisted state (call once, after the store started); returns how many limits."""
        if self._store is None:
            return 0
        now = self._clock.now_us()
        self._tat.update(await self._store.write(lambda: load_state(now)))
        return len(self._tat)

    def _changed(self, items: list[tuple[str, float]]) -> None:
        if self._store is None:
            return
        for limit_id, tat in items:
            self._dirty[limit_id] = math.ceil(tat)  # rounded up: never looser than memory
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        assert self._store is not None
        while self._dirty:
            batch, self._dirty = self._dirty, {}
            try:
                await self._store.write(partial(save_state, batch))
            except RationerError as exc:
                # Memory stays right; only a restart during the outage would
                # forget. The next change retries these rows with it.
                log.warning("could not persist rate-limit state", error=exc.message, limits=len(batch))
                self._dirty = {**batch, **self._dirty}
                return

    async def acquire(self, checks: list[RateCheck]) -> RateDenial | None:
        now = float(self._clock.now_us())
        new: list[tuple[str, float]] = []
        for c in checks:
            if c.cost > c.per_minute:
                return RateDenial(c.limit_id, float("inf"))
            tat = max(self._tat.get(c.limit_id, 0.0), now) + c.cost * _interval_us(c.per_minute)
            if tat - PERIOD_US > now:
                return RateDenial(c.limit_id, (tat - PERIOD_US - now) / 1e6)
            new.append((c.limit_id, tat))
        self._tat.update(new)
        self._changed(new)
        if len(self._tat) > 100_000:
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        return None

    async def refund(self, checks: list[RateCheck]) -> None:
        now = float(self._clock.now_us())
        moved: list[tuple[str, float]] = []
        for c in checks:
            tat = self._tat.get(c.limit_id)
            if tat is not None and c.cost > 0:
                self._tat[c.limit_id] = max(tat - c.cost * _interval_us(c.per_minute), now)
                moved.append((c.limit_id, self._tat[c.limit_id]))
        self._changed(moved)

    async def close(self) -> None:
        """Write what is not persisted yet (before the store closes)."""
        if self._flusher is not None:
            await self._flusher
        if self._dirty:
            await self._flush()


# KEYS: one per limit. ARGV: pairs (interval_us, cost). Uses the Redis clock so
# every replica agrees on "now". Returns {0, 0} or {index, wait_us}.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = 60000000
local news = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local cost = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  if new_tat - period > now then
    return {i, math.ceil(new_tat - period - now)}
  end
  news[i] = new_tat
end
for i = 1, #KEYS do
  local ttl_ms = math.ceil((news[i] - now) / 1000) + 1000
  redis.call('SET', KEYS[i], string.format('%.0f', news[i]), 'PX', ttl_ms)
end
return {0, 0}
"""


# KEYS and ARGV as above. Moves each TAT back by interval * cost, not before now.
REFUND_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  local new_tat = tat - tonumber(ARGV[2 * i - 1]) * tonumber(ARGV[2 * i])
  if new_tat <= now then
    redis.call('DEL', KEYS[i])
  else
    redis.call('SET', KEYS[i], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
  end
end
return 0
"""


class RedisRateLimiter:
    """GCRA in one Lua script, so replicas share one global limit atomically."""

    def __init__(self, url: str, prefix: str = "rationer:rl:", timeout_s: float = 1.0) -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._prefix = prefix
        self._url = url
        self._script: Any = self._redis.register_script(GCRA_LUA)
        self._refund: Any = self._redis.register_script(REFUND_LUA)

    async def acquire(self, checks: list[RateCheck]) -> RateDenial | None:
        for c in checks:
            if c.cost > c.per_minute:
                return RateDenial(c.limit_id, float("inf"))
        if not checks:
            return None
        keys = [self._prefix + c.limit_id for c in checks]
        args: list[float | int] = []
        for c in checks:
            args += [_interval_us(c.per_minute), c.cost]
        try:
            idx, wait_us = await self._script(keys=keys, args=args)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise Unavailable(f"rate-limit store (Redis at {self._url}) is unavailable: {exc}") from exc
        if int(idx) == 0:
            return None
        return RateDenial(checks[int(idx) - 1].limit_id, int(wait_us) / 1e6)

    async def refund(self, checks: list[RateCheck]) -> None:
        checks = [c for c in checks if c.cost > 0]
        if not checks:
            return
        args: list[float | int] = []
        for c in checks:
            args += [_interval_us(c.per_minute), c.cost]
        try:
            await self._refund(keys=[self._prefix + c.limit_id for c in checks], args=args)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise Unavailable(f"rate-limit store (Redis at {self._url}) is unavailable: {exc}") from exc

    async def close(self) -> None:
        await self._redis.aclose()
