"""Money as text: exact decimals from integer nano-USD, never "0.000000" for a non-zero amount.

At least six decimals (a report's columns line up); an amount under a cent
gets as many more as its first three significant digits need, up to nine,
which is exact. Built from integers, so no float rounding can turn a
non-zero cost into zero or change a total.
"""

from __future__ import annotations

NANO_PER_USD = 1_000_000_000
MIN_PLACES = 6
SIGNIFICANT = 3


def usd_text(nano: int, *, dollar: bool = True, grouping: bool = True) -> str:
    """``usd_text(12_300) == "$0.0000123"``; ``usd_text(2_500_000_000) == "$2.500000"``."""
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), NANO_PER_USD)
    digits = f"{frac:09d}"
    places = MIN_PLACES
    if whole == 0 and frac:
        leading_zeros = len(digits) - len(digits.lstrip("0"))
        places = max(MIN_PLACES, min(9, leading_zeros + SIGNIFICANT))
    head = f"{whole:,}" if grouping else str(whole)
    return f"{sign}{'$' if dollar else ''}{head}.{digits[:places]}"


def usd_to_nano(usd: str | float) -> int:
    """A USD amount as typed (``"25"``, ``"0.5"``) to nano-USD, exactly for decimal text."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(str(usd))
    except InvalidOperation:
        raise ValueError(f"not a number: {usd!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {usd!r}")
    return int((value * NANO_PER_USD).to_integral_value())
