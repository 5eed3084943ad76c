"""Usage (the chargeback report) read from the rollups.

Whole UTC days inside the range come from ``rollups_daily``, the whole hours
left at either end from ``rollups_hourly``, the ragged ends (a mid-hour start
or end) from the raw events, in one UNION ALL: the answer equals
:func:`services.ledger.sql.admin.usage` over the events exactly, at a cost of
the daily rows plus at most two days of hourly rows and two hours of events.
"""

from __future__ import annotations

from services.ledger.models import USAGE_KINDS, UsageRow
from services.ledger.sql.admin import _GROUP_COLUMNS, _SCOPE_COLUMNS, SIGNAL_KINDS, UsageQuery, usage_rows
from services.ledger.sql.common import Op
from services.ledger.sql.rollups import DAY_US, HOUR_US, SUM_COLS

_SERVED = "kind IN (" + ", ".join(f"'{k}'" for k in USAGE_KINDS) + ")"
_KINDS = ", ".join(f"'{k}'" for k in (*USAGE_KINDS, *SIGNAL_KINDS))
# The per-event value of each rollup column (sql.rollups.contribution, in SQL).
_EVENT_VALUES = (
    [f"CASE WHEN {_SERVED} THEN {v} ELSE 0 END" for v in
     ("1", "prompt_tokens", "completion_tokens", "cost", "counterfactual_cost", "cache_hit", "overage")]
    + ["CASE WHEN kind = 'cache_hit' THEN counterfactual_cost - cost ELSE 0 END"]
    + [f"CASE WHEN kind = '{k}' THEN 1 ELSE 0 END" for k in SIGNAL_KINDS]
)  # fmt: skip


def _scope(q: UsageQuery) -> tuple[str, list[object]]:
    if q.scope_kind == "project":
        org, _, tag = q.scope_id.partition("/")
        return " AND org_id = ? AND project = ?", [org, tag]
    if q.scope_kind:
        return f" AND {_SCOPE_COLUMNS[q.scope_kind]} = ?", [q.scope_id]
    return "", []


def split(start: int | None, end: int | None, size: int = HOUR_US) -> tuple[int | None, int | None] | None:
    """The whole-bucket window [a, b) inside [start, end) (None ends: unbounded), or None if empty."""
    a = None if start is None else -(-start // size) * size
    b = None if end is None else end - end % size
    if a is not None and b is not None and a >= b:
        return None
    return a, b


Piece = tuple[str, str, int | None, int | None]  # table, its time column, [lo, hi)


def pieces(start: int | None, end: int | None) -> list[Piece]:
    """Cover [start, end) exactly: daily rows, hourly rows at the ends, raw events at the ragged ends."""
    hours = split(start, end)
    if hours is None:
        return [("events", "time", start, end)]
    ha, hb = hours
    out: list[Piece] = []
    if start is not None and ha is not None and start < ha:
        out.append(("events", "time", start, ha))
    if end is not None and hb is not None and hb < end:
        out.append(("events", "time", hb, end))
    days = split(start, end, DAY_US)
    if days is None:
        return [*out, ("rollups_hourly", "hour", ha, hb)]
    da, db = days
    out.append(("rollups_daily", "day_start", da, db))
    if ha is not None and da is not None and ha < da:
        out.append(("rollups_hourly", "hour", ha, da))
    if hb is not None and db is not None and db < hb:
        out.append(("rollups_hourly", "hour", db, hb))
    return out


def _range(col: str, lo: int | None, hi: int | None) -> tuple[str, list[object]]:
    sql, params = "", list[object]()
    if lo is not None:
        sql, params = sql + f" AND {col} >= ?", [lo]
    if hi is not None:
        sql, params = sql + f" AND {col} < ?", [*params, hi]
    return sql, params


def usage(q: UsageQuery) -> Op[list[UsageRow]]:
    cols = [_GROUP_COLUMNS[g] for g in q.group_by]
    scope, scope_params = _scope(q)
    selects, params = [], list[object]()
    values = [f"{v} AS {c}" for v, c in zip(_EVENT_VALUES, SUM_COLS, strict=True)]
    for table, col, lo, hi in pieces(q.start_us, q.end_us):
        when, p = _range(col, lo, hi)
        if table == "events":
            selects.append(f"SELECT {', '.join([*cols, *values])} FROM events WHERE kind IN ({_KINDS}){scope}{when}")
        else:
            selects.append(f"SELECT {', '.join([*cols, *SUM_COLS])} FROM {table} WHERE 1 = 1{scope}{when}")
        params += [*scope_params, *p]
    group = f" GROUP BY {', '.join(cols)} ORDER BY {', '.join(cols)}" if cols else ""
    sums = ", ".join(f"SUM({c})" for c in SUM_COLS)
    rows = yield (f"SELECT {', '.join([*cols, sums])} FROM ({' UNION ALL '.join(selects)}) u{group}",
                  tuple(params))  # fmt: skip
    return usage_rows(rows, q.group_by)
