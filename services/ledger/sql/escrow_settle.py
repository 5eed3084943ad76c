"""Commit of a reservation whose holds sit in an escrow slice (any replica may run it).

The hold rows are the reservation's own (no other request touches them), so a
commit within its hold charges them without locking a budget row. Usage above
the hold, or a late commit (the hold expired, so its replica may have reused
the room), goes to the budget rows, capped at the room outside every slice;
if that room is short, every slice on the path is first shrunk to what it
holds (as a refill would), so the rest of a slice never costs a commit money.

Lock order, as everywhere in escrow: budget rows (id order), replicas'
advisory locks (id order), hold rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from services.ledger.sql.alerts import raise_crossings, scope_org
from services.ledger.sql.charges import Cap, cap_charge
from services.ledger.sql.common import BudgetState, Dialect, Op, load_budgets


def lock_key(replica_id: str) -> int:
    """The advisory lock id of a replica's slices (a collision only makes two replicas wait on each other)."""
    return int.from_bytes(hashlib.sha256(replica_id.encode()).digest()[:8], "big", signed=True)


def lock_replicas(replicas: set[str]) -> Op[None]:
    for rep in sorted(replicas):
        # Exclusive: waits for that replica's placements in flight to commit,
        # and holds off new ones (they then see the new generation).
        yield ("SELECT pg_advisory_xact_lock(?)", (lock_key(rep),))


def shrink(b: BudgetState, replica: str) -> Op[None]:
    """Shrink a replica's slice to what its rows use (its lock is held), voiding its in-flight holds."""
    rows = yield ("SELECT COALESCE(SUM(COALESCE(charge, amount)), 0) FROM escrow_holds"
                  " WHERE replica_id = ? AND budget_id = ?", (replica, b.id))  # fmt: skip
    used = int(rows[0][0])
    yield ("UPDATE escrow_slices SET amount = ?, generation = generation + 1"
           " WHERE budget_id = ? AND replica_id = ? AND amount > ?", (used, b.id, replica, used))  # fmt: skip


def _reclaim_all(budgets: list[BudgetState]) -> Op[None]:
    if not budgets:
        return
    marks = ", ".join("?" for _ in budgets)
    rows = yield (f"SELECT budget_id, replica_id FROM escrow_slices WHERE budget_id IN ({marks})",
                  tuple(b.id for b in budgets))  # fmt: skip
    yield from lock_replicas({r[1] for r in rows})
    by_id = {b.id: b for b in budgets}
    for bid, rep in rows:
        yield from shrink(by_id[bid], rep)


def _early_alerts(budgets: list[BudgetState], res_id: str, cost: int, tokens: int, now: int) -> Op[None]:
    """Raise the alert lines this charge crosses now, counting charges not folded yet.

    Best effort (no row lock: two concurrent commits may each miss a line
    their sum crosses); folding raises every line exactly as spent moves
    (sql.escrow_refill.fold_own), and a line is only ever raised once (sql.alerts).
    """
    if not budgets:
        return
    marks = ", ".join("?" for _ in budgets)
    rows = yield (f"SELECT budget_id, SUM(charge) FROM escrow_holds WHERE budget_id IN ({marks})"
                  " AND charge IS NOT NULL AND reservation_id <> ? GROUP BY budget_id",
                  (*(b.id for b in budgets), res_id))  # fmt: skip
    unfolded = {r[0]: int(r[1]) for r in rows}
    seen = [replace(b, spent_raw=b.spent(now) + unfolded.get(b.id, 0)) for b in budgets]
    yield from raise_crossings(seen, cost, tokens, (yield from scope_org(budgets[0].scope_key)), now)


def settle_escrow(res_id: str, scope_keys: list[str], used: tuple[int, int], held: tuple[int, int],
                  late: bool, now: int, d: Dialect) -> Op[tuple[Cap, Cap | None, list[BudgetState]]]:  # fmt: skip
    """``(what the event charges, what goes to the budget rows directly or None, the rows locked)``."""
    cost, tokens = used
    central = late or cost > held[0] or tokens > held[1]
    locked = (yield from load_budgets(scope_keys, d)) if central else None
    rows = yield (f"SELECT budget_id FROM escrow_holds WHERE reservation_id = ? ORDER BY budget_id{d.for_update}",
                  (res_id,))  # fmt: skip
    budgets = locked if locked is not None else (yield from load_budgets(scope_keys, None))
    # Every budget on the path must still have its hold row: a row the slice's
    # owner folded away as expired (its clock ran ahead of ours) is no
    # longer covered by the slice, so that commit goes the central way.
    if not late and rows and {r[0] for r in rows} == {b.id for b in budgets}:
        in_usd, in_tok = min(cost, held[0]), min(tokens, held[1])
        usd = [b.id for b in budgets if b.unit == "usd"]
        marks = ", ".join("?" for _ in usd) or "NULL"
        yield (f"UPDATE escrow_holds SET charge = CASE WHEN budget_id IN ({marks}) THEN ? ELSE ? END"
               " WHERE reservation_id = ?", (*usd, in_usd, in_tok, res_id))  # fmt: skip
        yield from _early_alerts(budgets, res_id, in_usd, in_tok, now)
    else:
        in_usd = in_tok = 0
        yield ("DELETE FROM escrow_holds WHERE reservation_id = ?", (res_id,))
    if in_usd == cost and in_tok == tokens:
        return Cap(cost, tokens), None, []
    if locked is None:
        locked = yield from load_budgets(scope_keys, d)  # rare: a row was gone (see above)
    extra = yield from cap_charge(locked, cost - in_usd, tokens - in_tok, now)
    if extra.cost < cost - in_usd or extra.tokens < tokens - in_tok:
        yield from _reclaim_all(locked)
        extra = yield from cap_charge(locked, cost - in_usd, tokens - in_tok, now)
    total = Cap(in_usd + extra.cost, in_tok + extra.tokens, extra.cost_by, extra.tokens_by)
    return total, (extra if locked else None), locked
