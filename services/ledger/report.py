"""Chargeback report: Usage rows rendered as a rich table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from rationer.errors import InvalidArgument
from services.ledger.models import UsageRow
from services.ledger.money import NANO_PER_USD, from_datetime


def period_range(period: str) -> tuple[int, int]:
    """'2026-11' (a UTC month) or '2026-11-28' (a UTC day) as [start, end) in microseconds."""
    try:
        if len(period) == 7:
            start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
            end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(
                month=start.month + 1)  # fmt: skip
        else:
            start = datetime.strptime(period, "%Y-%m-%d").replace(tzinfo=UTC)
            end = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=UTC)
    except ValueError as exc:
        raise InvalidArgument(f"--period must look like 2026-11 or 2026-11-28, got {period!r}") from exc
    return from_datetime(start), from_datetime(end)


def usd(nano: int) -> str:
    # Exact decimal from integers: no float rounding in a money report.
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), NANO_PER_USD)
    return f"{sign}{whole}.{frac:09d}"[: len(f"{sign}{whole}") + 7]


def _total(rows: list[UsageRow], key: str) -> UsageRow:
    return UsageRow(
        {key: "TOTAL"}, sum(r.requests for r in rows), sum(r.prompt_tokens for r in rows),
        sum(r.completion_tokens for r in rows), sum(r.cost for r in rows),
        sum(r.counterfactual_cost for r in rows), sum(r.cache_hits for r in rows), sum(r.overage for r in rows),
    )  # fmt: skip


# overage: true cost not charged because a budget was at its hard limit
# (docs/ledger.md, "Usage above the hold"); spend + overage = true cost.
HEADERS = ["requests", "prompt_tokens", "completion_tokens", "cache_hits", "spend_usd",
           "counterfactual_usd", "savings_usd", "overage_usd"]  # fmt: skip


def _cells(r: UsageRow) -> list[str]:
    return [str(r.requests), str(r.prompt_tokens), str(r.completion_tokens), str(r.cache_hits),
            usd(r.cost), usd(r.counterfactual_cost), usd(r.savings), usd(r.overage)]  # fmt: skip


def render(rows: list[UsageRow], by: str, fmt: str, period: str) -> str:
    if fmt == "json":
        return json.dumps({
            "period": period, "by": by,
            "rows": [{by: r.group.get(by, ""), "requests": r.requests, "prompt_tokens": r.prompt_tokens,
                      "completion_tokens": r.completion_tokens, "cache_hits": r.cache_hits,
                      "spend_nano_usd": r.cost, "counterfactual_nano_usd": r.counterfactual_cost,
                      "savings_nano_usd": r.savings, "overage_nano_usd": r.overage} for r in rows],
            "total": {"spend_nano_usd": sum(r.cost for r in rows),
                      "savings_nano_usd": sum(r.savings for r in rows),
                      "overage_nano_usd": sum(r.overage for r in rows),
                      "requests": sum(r.requests for r in rows)},
        })  # fmt: skip
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([by, *HEADERS])
        for r in [*rows, _total(rows, by)]:
            w.writerow([r.group.get(by, ""), *_cells(r)])
        return buf.getvalue().rstrip("\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Chargeback {period} by {by}")
    table.add_column(by)
    for h in HEADERS:
        table.add_column(h, justify="right")
    for r in rows:
        table.add_row(r.group.get(by, ""), *_cells(r))
    table.add_section()
    table.add_row(*([ "TOTAL", *_cells(_total(rows, by))]))
    out = io.StringIO()
    Console(file=out, width=160, force_terminal=False).print(table)
    return out.getvalue().rstrip("\n")
