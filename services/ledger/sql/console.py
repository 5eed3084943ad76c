"""Control-plane operations the console adds to sql.admin: key updates, budget removal, audit "before" reads."""

from __future__ import annotations

from dataclasses import dataclass

from rationer.errors import NotFound
from services.ledger.models import Budget, KeyRecord, Price
from services.ledger.sql.admin import BudgetSpec, list_budgets
from services.ledger.sql.common import PRICE_COLS, Op, load_key_by_id, price_from_row


def budget_id(b: BudgetSpec) -> str:
    return f"budget:{b.scope_kind}:{b.scope_id}:{b.unit}:{b.period}"


def budget_by_id(bid: str, now: int) -> Op[Budget | None]:
    rows = yield ("SELECT scope_key FROM budgets WHERE id = ?", (bid,))
    if not rows:
        return None
    return next((b for b in (yield from list_budgets(str(rows[0][0]), now)) if b.id == bid), None)


def remove_budget(bid: str, now: int) -> Op[Budget]:
    """Delete a budget and its live holds (the reservations themselves stay valid)."""
    before = yield from budget_by_id(bid, now)
    if before is None:
        raise NotFound(f"budget {bid!r} does not exist; `rationer budgets list` shows the budget ids")
    yield ("DELETE FROM holds WHERE budget_id = ?", (bid,))
    # Escrow slices and their hold rows on it go too (no slice counts for a budget that is gone).
    yield ("DELETE FROM escrow_holds WHERE budget_id = ?", (bid,))
    yield ("DELETE FROM escrow_slices WHERE budget_id = ?", (bid,))
    yield ("DELETE FROM budgets WHERE id = ?", (bid,))
    return before


def price_or_none(tier: str) -> Op[Price | None]:
    rows = yield (f"SELECT {PRICE_COLS} FROM prices WHERE tier = ? ORDER BY version DESC LIMIT 1", (tier,))
    return price_from_row(rows[0]) if rows else None


@dataclass(frozen=True)
class KeyUpdate:
    key_id: str
    role: str | None = None  # None: unchanged
    allowed_tiers: tuple[str, ...] | None = None  # None: unchanged; (): all tiers


def update_key(u: KeyUpdate) -> Op[KeyRecord]:
    if (yield from load_key_by_id(u.key_id)) is None:
        raise NotFound(f"API key {u.key_id!r} does not exist; `rationer keys list` shows the key ids")
    if u.role is not None:
        yield ("UPDATE api_keys SET role = ?, is_admin = ? WHERE id = ?", (u.role, int(u.role == "admin"), u.key_id))
    if u.allowed_tiers is not None:
        yield ("UPDATE api_keys SET allowed_tiers = ? WHERE id = ?", (",".join(u.allowed_tiers), u.key_id))
    key = yield from load_key_by_id(u.key_id)
    assert key is not None
    return key
