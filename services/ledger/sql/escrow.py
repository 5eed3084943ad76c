"""Budget escrow on PostgreSQL: place holds in a replica's slice, refill, reclaim, fold, reap.

Invariant E1 (docs/ledger.md): for every budget, spent + live central holds +
the sum of its slices' amounts <= hard_limit, and within each slice the sum
over its hold rows of (charge if charged, else amount) <= the slice's amount.
A slice's amount only grows under the budget's row lock, inside the room the
first sum leaves; hold rows only enter a slice under its replica's shared
advisory lock with the generation that replica sized them against, and a
reclaim (another replica's exclusive lock) bumps the generation. So no
interleaving of replicas can overspend, and folding (charges moved from the
slice into spent) keeps both sums unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rationer.errors import PermissionDenied
from services.ledger.models import EMBEDDINGS_TIER, AuthorizeInput, KeyRecord, Price, Reservation
from services.ledger.money import cost_nano_usd
from services.ledger.sql.alerts import raise_crossings, scope_org
from services.ledger.sql.charges import add_spent
from services.ledger.sql.common import (
    BUDGET_COLS,
    BudgetState,
    Dialect,
    Op,
    budget_from_row,
    current_price,
    load_budgets,
)
from services.ledger.sql.data import existing_reservation
from services.ledger.sql.escrow_settle import lock_key


class StaleSlice(Exception):
    """Another replica reclaimed (or the reaper removed) a slice this hold was sized against."""


@dataclass(frozen=True)
class Prepared:
    """What an Authorize needs before it can look at its slices (read outside any lock)."""

    a: AuthorizeInput
    key: KeyRecord
    price: Price
    hold_usd: int
    hold_tokens: int
    budgets: tuple[BudgetState, ...]
    scope_keys: tuple[str, ...]

    def amount(self, b: BudgetState) -> int:
        return self.hold_usd if b.unit == "usd" else self.hold_tokens

    def amounts(self) -> dict[str, int]:
        return {b.id: self.amount(b) for b in self.budgets}


def check_tier(key: KeyRecord, tier: str) -> None:
    if key.allowed_tiers and tier not in key.allowed_tiers and tier != EMBEDDINGS_TIER:
        raise PermissionDenied(
            f"API key {key.key_id} may not use tier {tier!r}; allowed: {', '.join(key.allowed_tiers)}"
        )


def lookups(tier: str | None, scope_keys: list[str] | None) -> Op[tuple[Price | None, list[BudgetState] | None]]:
    """The tier's current price and the path's budgets (each only if asked for): one read."""
    price = (yield from current_price(tier)) if tier is not None else None
    budgets = (yield from load_budgets(scope_keys, None)) if scope_keys is not None else None
    return price, budgets


def prepared(a: AuthorizeInput, key: KeyRecord, price: Price, budgets: list[BudgetState],
             scope_keys: list[str]) -> Prepared:  # fmt: skip
    hold_usd = cost_nano_usd(a.prompt_tokens, a.max_completion_tokens, price)
    return Prepared(a, key, price, hold_usd, a.prompt_tokens + a.max_completion_tokens, tuple(budgets),
                    tuple(scope_keys))  # fmt: skip


def insert_placed(p: Prepared, res_id: str, replica: str, expires: int, now: int,
                  budgets: list[BudgetState]) -> Op[None]:  # fmt: skip
    a, key = p.a, p.key
    yield (
        "INSERT INTO reservations (id, request_id, key_id, org_id, team_id, user_id, project, tier, model,"
        " price_version, held_usd, held_tokens, state, created_at, expires_at, escrow_replica)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'held', ?, ?, ?)",
        (res_id, a.request_id or None, key.key_id, key.org_id, key.team_id, key.user_id, a.project,
         a.tier, a.model or p.price.model, p.price.version, p.hold_usd, p.hold_tokens, now, expires, replica),
    )  # fmt: skip
    if budgets:
        values = ", ".join("(?, ?, ?, ?, ?)" for _ in budgets)
        params: list[object] = []
        for b in budgets:
            params += [res_id, b.id, replica, p.amount(b), expires]
        yield (f"INSERT INTO escrow_holds (reservation_id, budget_id, replica_id, amount, expires_at)"
               f" VALUES {values}", tuple(params))  # fmt: skip


def place(p: Prepared, res_id: str, replica: str, generations: Mapping[str, int], expires: int, now: int,
          fraction: float) -> Op[Reservation]:  # fmt: skip
    """The fast path: the replica already took the hold from its slices in memory."""
    if p.a.request_id:
        earlier = yield from existing_reservation(p.a.request_id, p.a.key_id)
        if earlier is not None:
            return earlier
    yield ("SELECT pg_advisory_xact_lock_shared(?)", (lock_key(replica),))
    if generations:
        marks = ", ".join("?" for _ in generations)
        rows = yield (f"SELECT budget_id, generation FROM escrow_slices WHERE replica_id = ?"
                      f" AND budget_id IN ({marks})", (replica, *generations))  # fmt: skip
        if {r[0]: int(r[1]) for r in rows} != dict(generations):
            raise StaleSlice(res_id)
    yield from insert_placed(p, res_id, replica, expires, now, list(p.budgets))
    return Reservation(res_id, p.hold_usd, expires, (), fraction)


def reap_expired(now: int, d: Dialect, limit: int = 100) -> Op[int]:
    """Fold and remove slices past their expiry (a replica that died or stopped settling).

    Every hold in a slice expires no later than the slice, so what is left
    is charges (folded into spent, so no acknowledged commit is lost) and
    dead holds; then the slice stops counting.
    """
    rows = yield ("SELECT budget_id, replica_id FROM escrow_slices WHERE expires_at <= ?"
                  " ORDER BY budget_id, replica_id LIMIT ?", (now, limit))  # fmt: skip
    n = 0
    for budget_id, rep in rows:
        locked = yield (f"SELECT id FROM budgets WHERE id = ?{d.for_update}", (budget_id,))
        if d.name == "postgres":
            yield ("SELECT pg_advisory_xact_lock(?)", (lock_key(rep),))
        still = yield ("SELECT 1 FROM escrow_slices WHERE budget_id = ? AND replica_id = ? AND expires_at <= ?",
                       (budget_id, rep, now))  # fmt: skip
        if not still:
            continue
        charged = yield ("DELETE FROM escrow_holds WHERE replica_id = ? AND budget_id = ?"
                         " RETURNING COALESCE(charge, 0)", (rep, budget_id))  # fmt: skip
        total = sum(int(r[0]) for r in charged)
        if total and locked:
            (b,) = yield from _budget(budget_id)
            yield add_spent(b, total, now)
            yield from raise_crossings([b], total, total, (yield from scope_org(b.scope_key)), now)
        yield ("DELETE FROM escrow_slices WHERE budget_id = ? AND replica_id = ?", (budget_id, rep))
        n += 1
    return n


def _budget(budget_id: str) -> Op[list[BudgetState]]:
    rows = yield (f"SELECT {BUDGET_COLS} FROM budgets WHERE id = ?", (budget_id,))
    return [budget_from_row(r) for r in rows]
