"""The console's query parameters: periods, choices, ids, safe redirects."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rationer.errors import InvalidArgument
from services.router.console.params import Period, choice, ident, period, this_month
from services.router.console.security import safe_next

NOW = datetime(2031, 12, 15, 23, 59, tzinfo=UTC)


def test_this_month_is_the_default_by_the_given_clock() -> None:
    assert period({}, NOW, 400) == Period(date(2031, 12, 1), date(2031, 12, 31))
    assert this_month(datetime(2032, 2, 10, tzinfo=UTC)).last == date(2032, 2, 29)


@given(first=st.dates(date(2000, 1, 1), date(2100, 1, 1)), days=st.integers(1, 400))
def test_a_range_covers_whole_utc_days(first: date, days: int) -> None:
    last = first + timedelta(days=days - 1)
    p = period({"from": first.isoformat(), "to": last.isoformat()}, NOW, 400)
    assert p.days == days and p.end_us - p.start_us == days * 86_400_000_000
    assert p.as_json() == {"from": first.isoformat(), "to": last.isoformat()}


@pytest.mark.parametrize("query, param", [
    ({"from": "2031-13-01", "to": "2031-12-01"}, "from"), ({"from": "yesterday", "to": "2031-12-01"}, "from"),
    ({"from": "2031-12-01", "to": "2031-12-1"}, "to"), ({"to": "2031-12-01"}, "from"),
    ({"from": "2031-12-02", "to": "2031-12-01"}, "to"), ({"from": "2030-01-01", "to": "2031-12-01"}, "to"),
])  # fmt: skip
def test_bad_periods_say_what_to_send(query: dict[str, str], param: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        period(query, NOW, 400)
    assert err.value.param == param


def test_choices_and_ids() -> None:
    assert choice({}, "by", ("org", "team"), "team") == "team"
    with pytest.raises(InvalidArgument, match="must be one of org, team"):
        choice({"by": "<b>"}, "by", ("org", "team"), "team")
    assert ident({"team": "acme/eng"}, "team") == "acme/eng"
    with pytest.raises(InvalidArgument):
        ident({"team": "<script>"}, "team")


@pytest.mark.parametrize("path, expect", [
    ("/console/chargeback?by=org", "/console/chargeback?by=org"), ("", "/console/"),
    ("https://evil.example/", "/console/"), ("//evil.example/console/", "/console/"),
    ("/console//evil.example", "/console/"), ("/console/login?next=x", "/console/"),
    ("/console/\\evil", "/console/"), ("/console/x\r\nSet-Cookie: a=b", "/console/"),
])  # fmt: skip
def test_only_console_paths_are_followed_after_sign_in(path: str, expect: str) -> None:
    assert safe_next(path) == expect
