"""Query parameters the pages share: the period, choices, ids. Bad input is a 400 saying what to send."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from rationer.errors import InvalidArgument
from services.ledger.money import from_datetime

_ID = re.compile(r"^[A-Za-z0-9_.:@/+-]{1,128}$")


@dataclass(frozen=True)
class Period:
    """Whole UTC days ``first`` to ``last`` (both included), i.e. [start_us, end_us)."""

    first: date
    last: date

    @property
    def start_us(self) -> int:
        return from_datetime(datetime(self.first.year, self.first.month, self.first.day, tzinfo=UTC))

    @property
    def end_us(self) -> int:
        nxt = self.last + timedelta(days=1)
        return from_datetime(datetime(nxt.year, nxt.month, nxt.day, tzinfo=UTC))

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def as_json(self) -> dict[str, str]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat()}


def this_month(now: datetime) -> Period:
    first = now.astimezone(UTC).date().replace(day=1)
    nxt = first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)
    return Period(first, nxt - timedelta(days=1))


def _day(name: str, text: str) -> date:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"{name} must be a date like 2026-12-01 (UTC), got {text[:40]!r}",
                              param=name) from None  # fmt: skip


def period(query: dict[str, str], now: datetime, max_days: int) -> Period:
    """``from``/``to`` (inclusive UTC dates); neither: this month by the router's clock."""
    got_from, got_to = query.get("from", ""), query.get("to", "")
    if not got_from and not got_to:
        return this_month(now)
    if not got_from or not got_to:
        raise InvalidArgument("give both from and to (dates like 2026-12-01), or neither for this month",
                              param="from" if not got_from else "to")  # fmt: skip
    p = Period(_day("from", got_from), _day("to", got_to))
    if p.last < p.first:
        raise InvalidArgument(f"to ({p.last}) is before from ({p.first})", param="to")
    if p.days > max_days:
        raise InvalidArgument(f"the range {p.first}..{p.last} is {p.days} days; the console reads at most "
                              f"{max_days} days at a time (http.console.max_range_days)", param="to")  # fmt: skip
    return p


def choice(query: dict[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = query.get(name, default)
    if value not in allowed:
        raise InvalidArgument(f"{name} must be one of {', '.join(allowed)}, got {value[:40]!r}", param=name)
    return value


def ident(query: dict[str, str], name: str) -> str:
    """An optional id (org, team, user, key, project); "" when absent."""
    value = query.get(name, "")
    if value and not _ID.match(value):
        raise InvalidArgument(f"{name} {value[:40]!r} is not an id: letters, digits and _ . : @ / + - only, "
                              "at most 128", param=name)  # fmt: skip
    return value
