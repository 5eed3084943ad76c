"""Budget alerts: raised once per crossing per period, in the transaction of the usage that crossed.

An alert is keyed by (budget, period start, kind, fraction) under a UNIQUE
constraint, and every writer inserts it with ``ON CONFLICT DO NOTHING``, so
however many ledger replicas commit across a line at once, one row exists
(docs/ledger.md, L21). The commit that inserts it also inserts one pending
delivery per webhook of the budget and of its org, in the same transaction:
an alert without its deliveries (or the reverse) cannot exist.

Kinds: ``soft`` (spent reached a configured fraction of the hard limit),
``hard`` (spent reached the hard limit), ``forecast`` (at the current rate
the budget runs out before its period ends; raised by the deliverer's scan).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from rationer.errors import InvalidArgument
from services.ledger.money import format_usd, period_bounds, to_datetime
from services.ledger.sql.common import BudgetState, Op

DEFAULT_FRACTIONS_BP = (5000, 8000, 9500)
BP = 10_000
KINDS = ("soft", "hard", "forecast")
ALERT_COLS = "id, budget_id, period_start, kind, fraction_bp, time, scope_key, unit, hard_limit, spent, text"


@dataclass(frozen=True)
class Alert:
    id: str
    budget_id: str
    period_start_us: int
    kind: str
    fraction_bp: int
    time_us: int
    scope_key: str
    unit: str
    hard_limit: int
    spent: int
    text: str


def fractions_bp(fractions: Iterable[float]) -> tuple[int, ...]:
    """Validated soft alert fractions as sorted, distinct basis points (each in (0, 1])."""
    out: set[int] = set()
    for f in fractions:
        if not 0 < f <= 1 or f != f:
            raise InvalidArgument(f"alert fractions must each be in (0, 1], e.g. 0.5, 0.8, 0.95; got {f!r}")
        bp = round(f * BP)
        if bp == 0 or abs(bp - f * BP) > 1e-6:
            raise InvalidArgument(f"alert fraction {f!r} has more than 4 decimals (0.0001 is the finest step)")
        out.add(bp)
    if len(out) > 10:
        raise InvalidArgument(f"at most 10 alert fractions per budget, got {len(out)}")
    return tuple(sorted(out))


def parse_bp(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def crossed(prev: int, new: int, hard_limit: int, lines_bp: Iterable[int]) -> list[tuple[str, int]]:
    """The (kind, fraction_bp) lines that ``prev -> new`` crosses: ``prev < line <= new``, exact integers."""
    out = [("soft", bp) for bp in lines_bp if prev * BP < bp * hard_limit <= new * BP]
    if hard_limit > 0 and prev < hard_limit <= new:
        out.append(("hard", BP))
    return out


def reached(spent: int, hard_limit: int, lines_bp: Iterable[int]) -> list[tuple[str, int]]:
    """Every line ``spent`` is at or past (a budget whose limit was lowered below its spend)."""
    if hard_limit <= 0:
        return []
    return crossed(-1, spent, hard_limit, lines_bp)


def _amount(unit: str, n: int) -> str:
    return format_usd(n) if unit == "usd" else f"{n:,} tokens"


def alert_text(b: BudgetState, kind: str, bp: int, spent: int, runs_out_us: int | None = None) -> str:
    what = {
        "soft": f"reached {bp / 100:g}% of its hard limit",
        "hard": "reached its hard limit: further requests are denied until the period resets",
        "forecast": "is forecast to run out before its period ends"
        + (f", on {to_datetime(runs_out_us).strftime('%Y-%m-%d %H:%M UTC')}" if runs_out_us else ""),
    }[kind]
    return (f"Budget {b.scope_key} ({b.unit}, {b.period}) {what}: spent {_amount(b.unit, spent)} "
            f"of {_amount(b.unit, b.hard_limit)}.")  # fmt: skip


def body(a: Alert, period: str) -> str:
    """The webhook JSON: Slack-compatible ``text`` plus the structured alert."""
    kind, _, scope_id = a.scope_key.partition(":")
    _, end = period_bounds(period, a.period_start_us) if period != "lifetime" else (0, None)
    return json.dumps({
        "text": a.text,
        "alert": {
            "id": a.id, "kind": a.kind, "fraction": a.fraction_bp / BP, "budget_id": a.budget_id,
            "scope": {"kind": kind, "id": scope_id}, "unit": a.unit, "period": period,
            "period_start": to_datetime(a.period_start_us).isoformat(),
            "period_end": to_datetime(end).isoformat() if end is not None else None,
            "hard_limit": a.hard_limit, "spent": a.spent, "time": to_datetime(a.time_us).isoformat(),
        },
    }, sort_keys=True)  # fmt: skip


def scope_org(scope_key: str) -> Op[str]:
    """The org a budget scope belongs to (org webhooks receive its alerts)."""
    kind, _, scope_id = scope_key.partition(":")
    if kind == "key":
        rows = yield ("SELECT org_id FROM api_keys WHERE id = ?", (scope_id,))
        return str(rows[0][0]) if rows else ""
    return scope_id.split("/", 1)[0]


def raise_alert(b: BudgetState, period_start: int, kind: str, bp: int, spent: int, org_id: str, now: int,
                runs_out_us: int | None = None) -> Op[Alert | None]:  # fmt: skip
    """Insert the alert unless this (budget, period, kind, fraction) has one; None if it had."""
    a = Alert(f"al_{uuid.uuid4().hex}", b.id, period_start, kind, bp, now, b.scope_key, b.unit, b.hard_limit,
              spent, alert_text(b, kind, bp, spent, runs_out_us))  # fmt: skip
    rows = yield (
        f"INSERT INTO budget_alerts ({ALERT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (budget_id, period_start, kind, fraction_bp) DO NOTHING RETURNING id",
        (a.id, a.budget_id, a.period_start_us, a.kind, a.fraction_bp, a.time_us, a.scope_key, a.unit,
         a.hard_limit, a.spent, a.text),
    )  # fmt: skip
    if not rows:
        return None
    yield (
        "INSERT INTO webhook_deliveries (id, webhook_id, alert_id, body, state, attempts, next_attempt_at,"
        " lease_until, created_at) SELECT ? || id, id, ?, ?, 'pending', 0, ?, 0, ? FROM webhooks"
        " WHERE budget_id = ? OR (org_id = ? AND org_id <> '')",
        (f"d_{uuid.uuid4().hex[:12]}_", a.id, body(a, b.period), now, now, b.id, org_id),
    )
    return a


def _period_start(b: BudgetState, now: int) -> int:
    # As _charge_budgets rolls it: periods only move forward.
    start, _ = period_bounds(b.period, now)
    return max(start, b.period_start)


def raise_crossings(budgets: list[BudgetState], cost: int, tokens: int, org_id: str, now: int) -> Op[list[Alert]]:
    """After a commit added ``cost``/``tokens`` to every budget on the path (rows locked by it)."""
    out: list[Alert] = []
    for b in budgets:
        prev = b.spent(now)
        new = prev + (cost if b.unit == "usd" else tokens)
        for kind, bp in crossed(prev, new, b.hard_limit, parse_bp(b.alert_fractions)):
            a = yield from raise_alert(b, _period_start(b, now), kind, bp, new, org_id, now)
            if a is not None:
                out.append(a)
    return out


def raise_reached(b: BudgetState, now: int) -> Op[list[Alert]]:
    """After SetBudget: the lines the budget's current spend is already past (once each, as ever)."""
    org = yield from scope_org(b.scope_key)
    out: list[Alert] = []
    spent = b.spent(now)
    for kind, bp in reached(spent, b.hard_limit, parse_bp(b.alert_fractions)):
        a = yield from raise_alert(b, _period_start(b, now), kind, bp, spent, org, now)
        if a is not None:
            out.append(a)
    return out


def alert_from_row(r: tuple[object, ...]) -> Alert:
    return Alert(str(r[0]), str(r[1]), int(str(r[2])), str(r[3]), int(str(r[4])), int(str(r[5])), str(r[6]),
                 str(r[7]), int(str(r[8])), int(str(r[9])), str(r[10]))  # fmt: skip


def list_alerts(budget_ids: list[str], limit: int) -> Op[list[Alert]]:
    """Newest first; ``budget_ids`` empty = every budget."""
    where, params = "", tuple[str, ...]()
    if budget_ids:
        where = f" WHERE budget_id IN ({', '.join('?' for _ in budget_ids)})"
        params = tuple(budget_ids)
    rows = yield (f"SELECT {ALERT_COLS} FROM budget_alerts{where} ORDER BY time DESC, id LIMIT ?", (*params, limit))
    return [alert_from_row(r) for r in rows]
