"""Integer money and UTC periods."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from services.ledger.models import Price
from services.ledger.money import cost_nano_usd, from_datetime, period_bounds, to_datetime

GPT4O = Price("frontier", "gpt-4o", 2_500_000_000, 10_000_000_000, 1, 0, True)
TINY = Price("local-small", "smol", 10_000_000, 20_000_000, 1, 0, False)


def test_cost_is_exact_and_rounds_up_once() -> None:
    assert cost_nano_usd(1_000_000, 1_000_000, GPT4O) == 12_500_000_000  # $2.50 + $10
    assert cost_nano_usd(1, 0, TINY) == 10  # 10 nano-USD exactly
    assert cost_nano_usd(1, 1, Price("t", "m", 1, 1, 1, 0, False)) == 1  # 2e-6 nano rounds up to 1
    assert cost_nano_usd(0, 0, GPT4O) == 0


@given(st.integers(0, 10_000_000), st.integers(0, 10_000_000), st.integers(0, 10**11), st.integers(0, 10**11))
def test_cost_bounds(p: int, c: int, inp: int, out: int) -> None:
    price = Price("t", "m", inp, out, 1, 0, False)
    exact = (p * inp + c * out) / 1_000_000
    got = cost_nano_usd(p, c, price)
    assert exact <= got < exact + 1


def test_period_bounds_utc_calendar() -> None:
    now = from_datetime(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    start, end = period_bounds("monthly", now)
    assert to_datetime(start) == datetime(2026, 12, 1, tzinfo=UTC)
    assert end is not None and to_datetime(end) == datetime(2027, 1, 1, tzinfo=UTC)
    start, end = period_bounds("daily", now)
    assert to_datetime(start) == datetime(2026, 12, 31, tzinfo=UTC)
    assert end is not None and to_datetime(end) == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_bounds("lifetime", now) == (0, None)


def test_prompt_cache_reads_and_writes_have_their_own_rates() -> None:
    # $3/M input, $15/M output, reads $0.30/M, writes $3.75/M (Anthropic's list shape).
    priced = Price("claude", "c", 3_000_000_000, 15_000_000_000, 1, 0, False, 300_000_000, 3_750_000_000)
    # 1M prompt tokens: 0.2M plain, 0.5M read, 0.3M written; 0.1M output.
    assert cost_nano_usd(1_000_000, 100_000, priced, cache_read=500_000, cache_creation=300_000) == (
        600_000_000 + 150_000_000 + 1_125_000_000 + 1_500_000_000)  # fmt: skip
    # Unset cache rates are the input price: the split changes nothing.
    assert cost_nano_usd(1000, 10, GPT4O, cache_read=400, cache_creation=100) == cost_nano_usd(1000, 10, GPT4O)
