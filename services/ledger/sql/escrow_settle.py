"""Commit of a reservation whose holds sit in an escrow slice (any replica may run it).

The hold rows are the reservation's own (no other request touches them), so a
commit charges them without locking a budget row. Only usage above the hold,
or a late commit (the hold expired, so its replica may have reused the room),
goes to the budget rows, capped at the room outside every slice.
"""

from __future__ import annotations

from services.ledger.sql.charges import Cap, cap_charge
from services.ledger.sql.common import Dialect, Op, load_budgets


def settle_escrow(res_id: str, scope_keys: list[str], used: tuple[int, int], held: tuple[int, int],
                  late: bool, now: int, d: Dialect) -> Op[tuple[Cap, Cap | None]]:  # fmt: skip
    """``(what the event charges, what goes to the budget rows directly or None)``."""
    cost, tokens = used
    rows = yield (f"SELECT budget_id FROM escrow_holds WHERE reservation_id = ? ORDER BY budget_id{d.for_update}",
                  (res_id,))  # fmt: skip
    budgets = yield from load_budgets(scope_keys, None)
    ids = {b.id for b in budgets}
    # Every budget on the path must still have its hold row: a row the slice's
    # owner folded away as expired (its clock ran ahead of ours) is no
    # longer covered by the slice, so that commit goes the central way.
    if not late and rows and {r[0] for r in rows} == ids:
        in_usd, in_tok = min(cost, held[0]), min(tokens, held[1])
        usd = [b.id for b in budgets if b.unit == "usd"]
        if usd:
            marks = ", ".join("?" for _ in usd)
            yield (f"UPDATE escrow_holds SET charge = CASE WHEN budget_id IN ({marks}) THEN ? ELSE ? END"
                   " WHERE reservation_id = ?", (*usd, in_usd, in_tok, res_id))  # fmt: skip
        else:
            yield ("UPDATE escrow_holds SET charge = ? WHERE reservation_id = ?", (in_tok, res_id))
        if in_usd == cost and in_tok == tokens:
            return Cap(cost, tokens), None
        locked = yield from load_budgets(scope_keys, d)
        # The room outside every slice (this reservation's own slice included,
        # which already carries the part within the hold).
        extra = yield from cap_charge(locked, cost - in_usd, tokens - in_tok, now)
        return Cap(in_usd + extra.cost, in_tok + extra.tokens, extra.cost_by, extra.tokens_by), extra
    yield ("DELETE FROM escrow_holds WHERE reservation_id = ?", (res_id,))
    locked = yield from load_budgets(scope_keys, d)
    cap = yield from cap_charge(locked, cost, tokens, now)
    return cap, (cap if locked else None)
