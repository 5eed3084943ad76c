"""Pure parts of budget alerts: lines crossed, fractions, the run-out forecast, signing, backoff, URLs."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rationer.errors import InvalidArgument
from services.ledger.budget_alerts import check_url
from services.ledger.deliverer import backoff_us, sign
from services.ledger.forecast import DAY_US, Point, cumulative, forecast, window_start
from services.ledger.sql.alerts import crossed, fractions_bp, reached

MAR_1 = 1_930_089_600 * 1_000_000  # 2031-03-01T00:00Z


def test_crossed_is_prev_below_line_at_most_new() -> None:
    lines = (5000, 8000, 9500)
    assert crossed(0, 499, 1000, lines) == []
    assert crossed(0, 500, 1000, lines) == [("soft", 5000)]
    assert crossed(500, 800, 1000, lines) == [("soft", 8000)]  # 50% was crossed before
    assert crossed(800, 1000, 1000, lines) == [("soft", 9500), ("hard", 10000)]
    assert crossed(0, 0, 0, lines) == []  # a zero limit never "crosses"
    assert reached(960, 1000, lines) == [("soft", 5000), ("soft", 8000), ("soft", 9500)]


@given(st.lists(st.integers(0, 500), max_size=20), st.integers(1, 5000),
       st.lists(st.integers(1, 10_000), min_size=1, max_size=6, unique=True))  # fmt: skip
def test_a_climb_crosses_each_reached_line_exactly_once(steps: list[int], hard: int, lines: list[int]) -> None:
    spent, seen = 0, []
    for s in steps:
        seen += crossed(spent, spent + s, hard, sorted(lines))
        spent += s
    assert sorted(seen) == sorted(reached(spent, hard, lines))
    assert len(seen) == len(set(seen))


def test_fractions_are_validated_basis_points() -> None:
    assert fractions_bp([0.95, 0.5, 0.8, 0.5]) == (5000, 8000, 9500)
    for bad, msg in (([0.0], r"in \(0, 1\]"), ([1.01], r"in \(0, 1\]"), ([-0.5], r"in \(0, 1\]"),
                     ([float("nan")], r"in \(0, 1\]"), ([0.12345], "more than 4 decimals"),
                     ([i / 100 for i in range(1, 12)], "at most 10")):  # fmt: skip
        with pytest.raises(InvalidArgument, match=msg):
            fractions_bp(bad)


def test_forecast_rate_window_and_run_out() -> None:
    now = MAR_1 + 14 * DAY_US + DAY_US // 2  # 2031-03-15 12:00
    pts = cumulative([(MAR_1 + 2 * DAY_US, 1000), (MAR_1 + 12 * DAY_US, 12_000), (MAR_1 + 14 * DAY_US, 40_000)])
    assert [p.cumulative for p in pts] == [1000, 13_000, 53_000]
    assert window_start(now, MAR_1, 7) == MAR_1 + 8 * DAY_US  # the 3rd is outside the window
    f = forecast(53_000, 100_000, pts, now, MAR_1, MAR_1 + 31 * DAY_US, 7)
    assert f.rate_per_day == pytest.approx(8000)
    assert f.runs_out_at_us == now + 47_000 * DAY_US // 8000 and f.runs_out_before_end
    idle = forecast(10, 100, [], now, MAR_1, MAR_1 + 31 * DAY_US, 7)
    assert (idle.rate_per_day, idle.runs_out_at_us, idle.runs_out_before_end) == (0, None, False)
    done = forecast(100, 100, [Point(MAR_1, 100, 100)], now, MAR_1, None, 7)
    assert (done.runs_out_at_us, done.runs_out_before_end) == (now, False)  # lifetime: no period end


def test_signature_and_backoff() -> None:
    want = hmac.new(b"s3cret", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("s3cret", 1_700_000_000, "{}") == f"sha256={want}"
    assert [backoff_us(a, 30, 100) // 1_000_000 for a in (1, 2, 3, 4)] == [30, 60, 100, 100]


def test_webhook_urls() -> None:
    assert check_url("https://hooks.slack.com/services/T/B/x") == "https://hooks.slack.com/services/T/B/x"
    for bad in ("", "hooks.slack.com/x", "file:///etc/passwd", "javascript:alert(1)", "http://:80/x",
                "https://user:pw@host/x", "https://h/" + "x" * 2000):  # fmt: skip
        with pytest.raises(InvalidArgument):
            check_url(bad)
