"""Integer money and UTC calendar periods.

Money is integer nano-USD. A charge is rounded up once, on the sum of the input
and output parts: ``ceil((p * in_price + c * out_price) / 1e6)`` in exact
integer arithmetic, so the ledger never under-charges and every total is a sum
of integers (no float drift between events, Usage and reports).
"""

from __future__ import annotations

from datetime import UTC, datetime

from rationer.platform.money import usd_text
from services.ledger.models import Price

US = 1_000_000
NANO_PER_USD = 1_000_000_000


def cost_nano_usd(prompt_tokens: int, completion_tokens: int, price: Price, *, cache_read: int = 0,
                  cache_creation: int = 0) -> int:  # fmt: skip
    """``cache_read`` and ``cache_creation`` are parts of ``prompt_tokens``, at the price's cache rates."""
    read_rate = price.input_per_million if price.cache_read_per_million is None else price.cache_read_per_million
    write_rate = (price.input_per_million if price.cache_creation_per_million is None
                  else price.cache_creation_per_million)  # fmt: skip
    plain = prompt_tokens - cache_read - cache_creation
    numer = (plain * price.input_per_million + cache_read * read_rate + cache_creation * write_rate
             + completion_tokens * price.output_per_million)  # fmt: skip
    return -(-numer // 1_000_000)


def to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / US, tz=UTC)


def from_datetime(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def period_bounds(period: str, now_us: int) -> tuple[int, int | None]:
    """[start, end) of the UTC calendar period holding ``now_us``; lifetime has no end."""
    if period == "lifetime":
        return 0, None
    now = to_datetime(now_us)
    if period == "daily":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end_day = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=UTC)
        return from_datetime(start), from_datetime(end_day)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return from_datetime(start), from_datetime(end)


def utc_day(us: int) -> str:
    return to_datetime(us).strftime("%Y-%m-%d")


def format_usd(nano: int) -> str:
    # Significant digits for sub-cent amounts: never "$0.000000" for a non-zero cost.
    return usd_text(nano)
