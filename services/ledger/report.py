"""Chargeback report: Usage rows rendered as a rich table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rationer.errors import InvalidArgument
from rationer.platform.money import usd_text
from services.ledger.models import UsageRow
from services.ledger.money import from_datetime, to_datetime


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
    # Exact decimal from integers, with significant digits for sub-cent amounts.
    return usd_text(nano, dollar=False, grouping=False)


def period_label(start_us: int | None, end_us: int | None) -> str:
    """'2031-03' for a whole UTC month, '2031-03-15' for a day, else 'start..end'."""
    if start_us is None or end_us is None:
        return "all time"
    start, end = to_datetime(start_us), to_datetime(end_us)
    if (from_datetime(start), end_us) == period_range(start.strftime("%Y-%m")):
        return start.strftime("%Y-%m")
    if (start_us, end_us) == period_range(start.strftime("%Y-%m-%d")):
        return start.strftime("%Y-%m-%d")
    return f"{start.isoformat()}..{end.isoformat()}"


def key_labels(keys: Iterable[Any]) -> dict[str, str]:
    """key id -> who holds it (ApiKey messages), the labels of `--by key` rows (CLI and console alike)."""
    return {k.key_id: k.user_id or f"{k.team_id} service account {k.service_account}" for k in keys}


# An empty group value is traffic without that attribute: keys of team
# service accounts have no user, requests without a project tag no project.
EMPTY_LABELS = {"user": "(service accounts)", "project": "(untagged)"}


def label(r: UsageRow, by: str, names: dict[str, str] | None = None) -> str:
    value = r.group.get(by, "")
    if not value:
        return EMPTY_LABELS.get(by, "(none)")
    return f"{value} ({names[value]})" if names and value in names else value


def _total(rows: list[UsageRow], key: str) -> UsageRow:
    return UsageRow(
        {key: "TOTAL"}, sum(r.requests for r in rows), sum(r.prompt_tokens for r in rows),
        sum(r.completion_tokens for r in rows), sum(r.cost for r in rows),
        sum(r.counterfactual_cost for r in rows), sum(r.cache_hits for r in rows), sum(r.overage for r in rows),
        sum(r.cache_savings for r in rows), sum(r.denials for r in rows), sum(r.soft_alerts for r in rows),
        sum(r.wrong_hits for r in rows),
    )  # fmt: skip


# overage: true cost not charged because a budget was at its hard limit
# (docs/ledger.md, "Usage above the hold"); spend + overage = true cost.
# savings = cache_savings + routing_savings; denials and soft_alerts are
# budget refusals and alerts, not requests; wrong_hits are cache hits the
# receiving key reported wrong (POST /v1/cache/feedback), last so the columns
# before it keep their places.
HEADERS = ["requests", "prompt_tokens", "completion_tokens", "cache_hits", "spend_usd",
           "counterfactual_usd", "savings_usd", "cache_savings_usd", "routing_savings_usd", "overage_usd",
           "denials", "soft_alerts", "wrong_hits"]  # fmt: skip


def _cells(r: UsageRow) -> list[str]:
    return [str(r.requests), str(r.prompt_tokens), str(r.completion_tokens), str(r.cache_hits),
            usd(r.cost), usd(r.counterfactual_cost), usd(r.savings), usd(r.cache_savings),
            usd(r.routing_savings), usd(r.overage), str(r.denials), str(r.soft_alerts), str(r.wrong_hits)]  # fmt: skip


def _json_row(r: UsageRow) -> dict[str, int]:
    return {"requests": r.requests, "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "cache_hits": r.cache_hits, "spend_nano_usd": r.cost, "counterfactual_nano_usd": r.counterfactual_cost,
            "savings_nano_usd": r.savings, "cache_savings_nano_usd": r.cache_savings,
            "routing_savings_nano_usd": r.routing_savings, "overage_nano_usd": r.overage, "denials": r.denials,
            "soft_alerts": r.soft_alerts, "wrong_hits": r.wrong_hits}  # fmt: skip


def render(rows: list[UsageRow], by: str, fmt: str, period: str, names: dict[str, str] | None = None) -> str:
    """``names``: optional labels for group values (e.g. the owner of each key id)."""
    if fmt == "json":
        return json.dumps({
            "period": period, "by": by,
            "rows": [{by: r.group.get(by, ""), "label": label(r, by, names), **_json_row(r)} for r in rows],
            "total": _json_row(_total(rows, by)),
        })  # fmt: skip
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([by, *HEADERS])
        for r in rows:
            w.writerow([label(r, by, names), *_cells(r)])
        w.writerow(["TOTAL", *_cells(_total(rows, by))])
        return buf.getvalue().rstrip("\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Chargeback {period} by {by}")
    table.add_column(by)
    for h in HEADERS:
        table.add_column(h, justify="right")
    for r in rows:
        table.add_row(label(r, by, names), *_cells(r))
    table.add_section()
    table.add_row(*(["TOTAL", *_cells(_total(rows, by))]))
    out = io.StringIO()
    Console(file=out, width=240, force_terminal=False).print(table)
    return out.getvalue().rstrip("\n")
