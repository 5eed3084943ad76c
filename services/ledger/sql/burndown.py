"""A budget scope's spend per bucket, from the rollups (never the raw events).

A monthly or lifetime budget reads ``rollups_daily`` (one row per day x key x
tier x model x project), a daily budget ``rollups_hourly``. Both are kept in
the transaction of every event, so the series is exact up to the last commit.
"""

from __future__ import annotations

from rationer.errors import InvalidArgument
from services.ledger.sql.common import Op

_COLUMN = {"org": "org_id = ?", "team": "team_id = ?", "user": "user_id = ?", "key": "key_id = ?"}
LIFETIME_DAYS = 366  # a lifetime budget's chart shows its last year


def scope_where(scope_key: str) -> tuple[str, tuple[str, ...]]:
    kind, _, scope_id = scope_key.partition(":")
    if kind == "project":
        org, _, tag = scope_id.partition("/")
        return "org_id = ? AND project = ?", (org, tag)
    if kind not in _COLUMN:
        raise InvalidArgument(f"unknown budget scope kind {kind!r}")
    return _COLUMN[kind], (scope_id,)


def series(scope_key: str, unit: str, start_us: int, end_us: int, hourly: bool) -> Op[list[tuple[int, int]]]:
    """(bucket start, spend) for buckets in [start, end), ascending; buckets with no rows are left out."""
    where, params = scope_where(scope_key)
    table, bucket = ("rollups_hourly", "hour") if hourly else ("rollups_daily", "day_start")
    amount = "SUM(cost)" if unit == "usd" else "SUM(prompt_tokens + completion_tokens)"
    rows = yield (
        f"SELECT {bucket}, {amount} FROM {table} WHERE {where} AND {bucket} >= ? AND {bucket} < ?"
        f" GROUP BY {bucket} ORDER BY {bucket}",
        (*params, start_us, end_us),
    )
    return [(int(r[0]), int(r[1])) for r in rows]


def total_before(scope_key: str, unit: str, before_us: int) -> Op[int]:
    """Spend before the chart of a lifetime budget starts (its cumulative line starts there)."""
    where, params = scope_where(scope_key)
    amount = "SUM(cost)" if unit == "usd" else "SUM(prompt_tokens + completion_tokens)"
    rows = yield (f"SELECT {amount} FROM rollups_daily WHERE {where} AND day_start < ?", (*params, before_us))
    return int(rows[0][0] or 0) if rows else 0
