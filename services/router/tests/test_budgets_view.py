"""The Budgets page's pure parts: form parsing, JSON, the burn-down SVG (escaping included)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from rationer.api.ledger.v1 import ledger_pb2 as pb
from rationer.errors import InvalidArgument
from services.router.console.budgets_view import burndown_svg, parse_budget_form, parse_fractions, status_json


def _ts(d: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(d)
    return t


def _entry(scope_id: str = "acme/eng") -> pb.BudgetStatusEntry:
    b = pb.Budget(id=f"budget:team:{scope_id}:usd:monthly", scope=pb.Scope(kind=pb.SCOPE_KIND_TEAM, id=scope_id),
                  unit=pb.BUDGET_UNIT_USD, period=pb.BUDGET_PERIOD_MONTHLY, hard_limit=100_000, soft_fraction=0.8,
                  spent=52_000, period_end=_ts(datetime(2031, 4, 1, tzinfo=UTC)), alert_fractions=[0.5, 0.95])
    return pb.BudgetStatusEntry(
        budget=b, period_start=_ts(datetime(2031, 3, 1, tzinfo=UTC)), rate_per_day=8000,
        runs_out_at=_ts(datetime(2031, 3, 21, 12, tzinfo=UTC)), runs_out_before_period_end=True,
        points=[pb.BurnPoint(start=_ts(datetime(2031, 3, 13, tzinfo=UTC)), amount=12_000, cumulative=12_000),
                pb.BurnPoint(start=_ts(datetime(2031, 3, 15, tzinfo=UTC)), amount=40_000, cumulative=52_000)],
        alerts=[pb.BudgetAlert(id="al_1", kind="soft", fraction=0.5, text="<b>50%</b>")],
    )  # fmt: skip


def test_budget_form_parses_and_refuses_bad_input_precisely() -> None:
    f = parse_budget_form({"scope": "team:acme/eng", "unit": "usd", "period": "monthly", "hard_limit": "12.5",
                           "soft_fraction": "", "alert_fractions": "50%, 0.8,0.95"})  # fmt: skip
    assert (f.hard_limit, f.soft_fraction, f.alert_fractions) == (12_500_000_000, 0.0, (0.5, 0.8, 0.95))
    bad = [({"scope": "eng"}, "scope must look like"), ({"scope": "team:x", "hard_limit": "-1"}, "between \\$0"),
           ({"scope": "team:x", "hard_limit": "ten"}, "must be a number, got 'ten'"),
           ({"scope": "team:x", "hard_limit": "inf"}, "finite"), ({"scope": "team:x", "unit": "eur"}, "usd or tokens"),
           ({"scope": "team:x", "hard_limit": "1", "period": "weekly"}, "daily, monthly or lifetime"),
           ({"scope": "team:x", "hard_limit": "1", "unit": "tokens"} | {"hard_limit": "1.5"}, "whole number"),
           ({"scope": "team:x", "hard_limit": "1", "soft_fraction": "2"}, "soft fraction"),
           ({"scope": "team:x", "hard_limit": "1", "alert_fractions": "0.5,abc"}, "got 'abc'"),
           ({"scope": "team:x", "hard_limit": "1", "alert_fractions": "150%"}, r"in \(0, 1\]")]  # fmt: skip
    for form, msg in bad:
        with pytest.raises(InvalidArgument, match=msg):
            parse_budget_form(form)
    assert parse_fractions("") == ()


def test_status_json_and_svg_escape_what_users_named() -> None:
    e = _entry('<script>alert("x")</script>')
    j = status_json(e)
    assert j["runs_out_at"] == "2031-03-21T12:00:00+00:00" and j["runs_out_before_period_end"]
    assert [p["cumulative"] for p in j["points"]] == [12_000, 52_000]
    svg = burndown_svg(e, _ts(datetime(2031, 3, 15, 12, tzinfo=UTC)))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    for cls in ("hard-line", "soft-line", "alert-line", "spend", "forecast"):
        assert f'class="{cls}"' in svg
    assert "2031-03-01" in svg and "2031-04-01" in svg
