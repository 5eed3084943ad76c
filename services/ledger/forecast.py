"""A budget's burn-down and the date it runs out at the current rate (pure; no I/O, no clock).

Method: the spend rate is the spend of the last ``window_days`` UTC days
(today included, never before the period start), read from the rollups,
divided by the time from that window's start to now. The budget runs out
``remaining / rate`` after now, where remaining = hard limit - spent (the
budget's enforced counter). A rate of 0 never runs out; a budget at its
limit has run out now. "Before period end" compares that instant with the
end of the current period (a lifetime budget has no end, so never).
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_US = 86_400_000_000


@dataclass(frozen=True)
class Point:
    start_us: int  # bucket start (UTC day, or hour for a daily budget)
    amount: int  # spend in the bucket (nano-USD or tokens)
    cumulative: int  # spend from the series start to the end of the bucket


@dataclass(frozen=True)
class Forecast:
    rate_per_day: float  # nano-USD or tokens per day
    window_start_us: int  # where the rate was measured from
    runs_out_at_us: int | None  # None: never at this rate
    runs_out_before_end: bool


def cumulative(buckets: list[tuple[int, int]], offset: int = 0) -> list[Point]:
    out, total = [], offset
    for start, amount in sorted(buckets):
        total += amount
        out.append(Point(start, amount, total))
    return out


def window_start(now_us: int, period_start_us: int, window_days: int) -> int:
    today = now_us - now_us % DAY_US
    return max(period_start_us, today - (window_days - 1) * DAY_US)


def forecast(spent: int, hard_limit: int, points: list[Point], now_us: int, period_start_us: int,
             period_end_us: int | None, window_days: int) -> Forecast:  # fmt: skip
    """``points``: the period's buckets; only those inside the window count towards the rate."""
    start = window_start(now_us, period_start_us, window_days)
    # The window starts on a UTC day (or the period start, also one), so on a bucket edge.
    in_window = sum(p.amount for p in points if p.start_us >= start)
    elapsed = max(1, now_us - start)
    rate_per_us = in_window / elapsed
    if hard_limit <= spent:
        at: int | None = now_us
    elif rate_per_us <= 0:
        at = None
    else:
        at = now_us + int((hard_limit - spent) / rate_per_us)
    before = at is not None and period_end_us is not None and at < period_end_us
    return Forecast(rate_per_us * DAY_US, start, at, before)

