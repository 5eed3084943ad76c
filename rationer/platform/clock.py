"""The one seam through which services read the wall clock.

Anything that decides by calendar time (retry headers, budget periods, hold
expiry, rate windows, report periods, TTLs) asks a :class:`Clock` it was
given in its constructor instead of calling ``time.time()`` or
``datetime.now()`` itself, so tests fix "now" and pass on any date.
Deadlines and elapsed-time measurements use ``time.monotonic`` /
``time.perf_counter``: they never depend on the date.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    """The system's wall clock (UTC)."""

    def time(self) -> float:
        """Seconds since the Unix epoch."""
        return time.time()

    def now_us(self) -> int:
        """Microseconds since the Unix epoch (the ledger's timestamps)."""
        return int(self.time() * 1_000_000)

    def now(self) -> datetime:
        """An aware UTC datetime."""
        return datetime.fromtimestamp(self.time(), UTC)


class SystemClock(Clock):
    def now_us(self) -> int:
        # Integer nanoseconds: exact where float seconds would round.
        return time.time_ns() // 1000


SYSTEM_CLOCK: Clock = SystemClock()


class FixedClock(Clock):
    """A clock that only moves when told to (for tests and replays)."""

    def __init__(self, at: datetime | float) -> None:
        if isinstance(at, datetime):
            at = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
        self.at = float(at)

    def time(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


class ShiftedClock(Clock):
    """The real clock's ticking, started at a chosen instant (for tests that
    need time to pass, as holds and rate windows do, on a calendar date the
    test picks rather than today's)."""

    def __init__(self, start: datetime) -> None:
        self._offset = (start if start.tzinfo else start.replace(tzinfo=UTC)).timestamp() - time.time()

    def time(self) -> float:
        return time.time() + self._offset
