"""What a commit adds to the budgets: the cap at the room left, the charge statements.

Shared by the central path (services.ledger.sql.data) and escrow (services.ledger.sql.escrow).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.ledger.money import period_bounds
from services.ledger.sql.common import BudgetState, Dialect, Op, Query, active_holds


@dataclass(frozen=True)
class Cap:
    """What a commit may add to the budgets, and the budget that capped each unit."""

    cost: int
    tokens: int
    cost_by: str = ""
    tokens_by: str = ""


def cap_charge(budgets: list[BudgetState], cost: int, tokens: int, now: int) -> Op[Cap]:
    """Cap a charge at the smallest room left in any hard-limited budget on the path.

    Room = hard limit - spent - live holds of other reservations. A commit
    within its hold always fits (the hold was granted inside the limits, and
    no other commit may eat into it); usage above the hold, and a late commit
    whose hold expired, are charged only as far as the room goes. So no
    commit takes a budget's spent past its hard limit, and the one amount
    added to every budget of a unit is the event's (sum of events = spent).
    """
    held = yield from active_holds([b.id for b in budgets], now)
    charge, by = {"usd": cost, "tokens": tokens}, {"usd": "", "tokens": ""}
    for b in budgets:
        room = max(0, b.hard_limit - b.spent(now) - held.get(b.id, 0))
        if room < charge[b.unit]:
            charge[b.unit], by[b.unit] = room, b.id
    return Cap(charge["usd"], charge["tokens"], by["usd"], by["tokens"])


def charge_budgets(scope_keys: list[str], cost: int, tokens: int, now: int, d: Dialect) -> Query:
    """One statement adding the charge to every budget on the path, rolling periods.

    Last in the transaction so budget rows stay locked only until COMMIT; the
    subquery takes the row locks in id order like Authorize does (no deadlock).
    Periods only roll forward: operations can commit out of clock order
    (around midnight, or across replicas), and a charge stamped with the
    period just ended must not reset a row that already moved on. It is added
    to the current period instead, which errs towards counting it.
    """
    day, _ = period_bounds("daily", now)
    month, _ = period_bounds("monthly", now)
    marks = ", ".join("?" for _ in scope_keys)
    start = "(CASE period WHEN 'daily' THEN ? WHEN 'monthly' THEN ? ELSE 0 END)"
    return (
        f"UPDATE budgets SET spent = (CASE WHEN period_start < {start} THEN 0 ELSE spent END)"
        f" + (CASE unit WHEN 'usd' THEN ? ELSE ? END),"
        f" period_start = (CASE WHEN period_start < {start} THEN {start} ELSE period_start END), updated_at = ?"
        f" WHERE id IN (SELECT id FROM budgets WHERE scope_key IN ({marks}) ORDER BY id{d.for_update})",
        (day, month, cost, tokens, day, month, day, month, now, *scope_keys),
    )


def add_spent(b: BudgetState, amount: int, now: int) -> Query:
    """Add ``amount`` to one budget's spent, rolling its period forward like charge_budgets."""
    start, _ = period_bounds(b.period, now)
    return (
        "UPDATE budgets SET spent = (CASE WHEN period_start < ? THEN 0 ELSE spent END) + ?,"
        " period_start = (CASE WHEN period_start < ? THEN ? ELSE period_start END), updated_at = ? WHERE id = ?",
        (start, amount, start, start, now, b.id),
    )
