"""Usage (the chargeback report) read from the hourly rollups.

Whole UTC hours inside the range come from ``rollups_hourly``; the ragged
ends (a range that starts or ends mid-hour) from the raw events, in one
UNION ALL, so the answer equals :func:`services.ledger.sql.admin.usage` over
the events exactly, at a cost bounded by the rollup rows plus at most two
hours of events.
"""

from __future__ import annotations

from services.ledger.models import USAGE_KINDS, UsageRow
from services.ledger.sql.admin import _GROUP_COLUMNS, _SCOPE_COLUMNS, SIGNAL_KINDS, UsageQuery
from services.ledger.sql.common import Op
from services.ledger.sql.rollups import HOUR_US, SUM_COLS

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


def _ceil_hour(t: int) -> int:
    return -(-t // HOUR_US) * HOUR_US


def split(start: int | None, end: int | None) -> tuple[int | None, int | None] | None:
    """The whole-hour window [a, b) inside [start, end) (None ends: unbounded), or None if empty."""
    a = None if start is None else _ceil_hour(start)
    b = None if end is None else end - end % HOUR_US
    if a is not None and b is not None and a >= b:
        return None
    return a, b


def _range(col: str, lo: int | None, hi: int | None) -> tuple[str, list[object]]:
    sql, params = "", list[object]()
    if lo is not None:
        sql, params = sql + f" AND {col} >= ?", [lo]
    if hi is not None:
        sql, params = sql + f" AND {col} < ?", [*params, hi]
    return sql, params


def _event_edges(q: UsageQuery, window: tuple[int | None, int | None] | None) -> tuple[str, list[object]]:
    """The time condition on raw events: outside the rollup window, inside [start, end)."""
    if window is None:
        return _range("time", q.start_us, q.end_us)
    parts, params = [], list[object]()
    if q.start_us is not None and window[0] is not None and q.start_us < window[0]:
        parts.append("(time >= ? AND time < ?)")
        params += [q.start_us, window[0]]
    if q.end_us is not None and window[1] is not None and window[1] < q.end_us:
        parts.append("(time >= ? AND time < ?)")
        params += [window[1], q.end_us]
    if not parts:
        return " AND 1 = 0", []
    return f" AND ({' OR '.join(parts)})", params


def usage(q: UsageQuery) -> Op[list[UsageRow]]:
    cols = [_GROUP_COLUMNS[g] for g in q.group_by]
    scope, scope_params = _scope(q)
    window = split(q.start_us, q.end_us)
    selects, params = [], list[object]()
    if window is not None:
        when, p = _range("hour", *window)
        selects.append(f"SELECT {', '.join([*cols, *SUM_COLS])} FROM rollups_hourly WHERE 1 = 1{scope}{when}")
        params += [*scope_params, *p]
    edges, p = _event_edges(q, window)
    if not edges.endswith("1 = 0"):
        values = [f"{v} AS {c}" for v, c in zip(_EVENT_VALUES, SUM_COLS, strict=True)]
        selects.append(f"SELECT {', '.join([*cols, *values])} FROM events"
                       f" WHERE kind IN ({_KINDS}){scope}{edges}")  # fmt: skip
        params += [*scope_params, *p]
    group = f" GROUP BY {', '.join(cols)} ORDER BY {', '.join(cols)}" if cols else ""
    sums = ", ".join(f"SUM({c})" for c in SUM_COLS)
    rows = yield (f"SELECT {', '.join([*cols, sums])} FROM ({' UNION ALL '.join(selects)}) u{group}",
                  tuple(params))  # fmt: skip
    out, n = [], len(cols)
    for r in rows:
        nums = [int(x or 0) for x in r[n:]]
        if nums[0] == 0 and not any(nums[-3:]):
            continue  # an empty aggregate over no rows
        out.append(UsageRow(dict(zip(q.group_by, (str(x) for x in r[:n]), strict=True)), *nums))
    return out
