"""Escrow's slow path: size a replica's slices under the budget row locks (refill, reclaim, deny, settle).

Lock order everywhere: budget rows (id order), then replicas' advisory locks.
Taking its own lock exclusively and bumping its own generation makes the
slice exact: placements in flight either finished (their rows are read here)
or will fail as stale and retry, so the new amount covers every row it holds.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from services.ledger.models import Denial, Reservation
from services.ledger.money import period_bounds
from services.ledger.sql.alerts import raise_crossings, scope_org
from services.ledger.sql.charges import add_spent
from services.ledger.sql.common import BUDGET_COLS, BudgetState, Dialect, Op, budget_from_row, load_budgets
from services.ledger.sql.data import _denial, event, existing_reservation
from services.ledger.sql.escrow import Prepared, insert_placed
from services.ledger.sql.escrow_settle import lock_replicas, shrink
from services.ledger.sql.rollups import record_event


@dataclass(frozen=True)
class Sizing:
    fraction: float  # share of the spare room a slice takes, divided among the replicas holding slices
    max_requests: int  # a refill adds at most this many requests of the size that asked
    ttl_us: int  # slice lifetime past its last refill or settle (>= the holds placed in it)


@dataclass(frozen=True)
class Grant:
    """A slice as the database now has it; ``live`` is every hold row in it."""

    amount: int
    generation: int
    expires_at: int
    free_fraction: float
    live: dict[str, int]
    room: int = 0  # the budget's room outside central holds and other replicas' slices
    limit: int = 0


@dataclass(frozen=True)
class Outcome:
    grants: dict[str, Grant]
    result: Reservation | Denial | None


def fold_own(b: BudgetState, replica: str, now: int) -> Op[tuple[int, list[str]]]:
    """Move this replica's charged rows into spent (its slice shrinks by as much) and drop expired rows.

    Needs no advisory lock: the slice's amount and its rows' use fall by the
    same charges, so placements in flight stay covered.
    """
    rows = yield ("DELETE FROM escrow_holds WHERE replica_id = ? AND budget_id = ?"
                  " AND (charge IS NOT NULL OR expires_at <= ?) RETURNING reservation_id, COALESCE(charge, 0)",
                  (replica, b.id, now))  # fmt: skip
    charged = sum(int(r[1]) for r in rows)
    if charged:
        yield add_spent(b, charged, now)
        # spent moves here under escrow, so alert lines are crossed here (once: sql.alerts).
        yield from raise_crossings([b], charged, charged, (yield from scope_org(b.scope_key)), now)
        yield ("UPDATE escrow_slices SET amount = amount - ? WHERE budget_id = ? AND replica_id = ?",
               (charged, b.id, replica))  # fmt: skip
    return charged, [r[0] for r in rows]


def _live(b: BudgetState, replica: str) -> Op[dict[str, int]]:
    rows = yield ("SELECT reservation_id, COALESCE(charge, amount) FROM escrow_holds"
                  " WHERE replica_id = ? AND budget_id = ?", (replica, b.id))  # fmt: skip
    return {r[0]: int(r[1]) for r in rows}


def _room(b: BudgetState, replica: str, now: int) -> Op[tuple[int, dict[str, tuple[int, int]]]]:
    """(room outside central holds and every other replica's slice, {replica: (amount, generation)})."""
    rows = yield ("SELECT COALESCE(SUM(amount), 0) FROM holds WHERE budget_id = ? AND expires_at > ?", (b.id, now))
    slices = yield ("SELECT replica_id, amount, generation FROM escrow_slices WHERE budget_id = ?", (b.id,))
    by = {r[0]: (int(r[1]), int(r[2])) for r in slices}
    others = sum(amt for rep, (amt, _) in by.items() if rep != replica)
    return b.hard_limit - b.spent(now) - int(rows[0][0]) - others, by


def _write_slice(b: BudgetState, replica: str, amount: int, old: tuple[int, int] | None,
                 expires: int) -> Op[tuple[int, int]]:  # fmt: skip
    """Store the slice; returns (generation, expires_at). A new generation every time."""
    gen = secrets.randbits(62)  # random, so a reaped and recreated slice never repeats one
    if old is None:
        if amount == 0:
            return 0, 0
        yield ("INSERT INTO escrow_slices (budget_id, replica_id, amount, generation, expires_at)"
               " VALUES (?, ?, ?, ?, ?)", (b.id, replica, amount, gen, expires))  # fmt: skip
        return gen, expires
    if amount == 0:
        yield ("DELETE FROM escrow_slices WHERE budget_id = ? AND replica_id = ?", (b.id, replica))
        return 0, 0
    yield ("UPDATE escrow_slices SET amount = ?, generation = ?, expires_at = ? WHERE budget_id = ?"
           " AND replica_id = ?", (amount, gen, expires, b.id, replica))  # fmt: skip
    return gen, expires


def _size(need: int, free: int, want: int, n: int, s: Sizing) -> int:
    """The new slice: what it must cover plus a share of the spare room, so near the limit it shrinks to need."""
    spare = max(0, free - need)
    return need + min(spare, int(spare * s.fraction / max(1, n)), max(want, 1) * s.max_requests)


def _load(scope_keys: list[str], budget_ids: list[str], d: Dialect) -> Op[list[BudgetState]]:
    if scope_keys:
        return (yield from load_budgets(scope_keys, d))
    if not budget_ids:
        return []
    marks = ", ".join("?" for _ in budget_ids)
    rows = yield (f"SELECT {BUDGET_COLS} FROM budgets WHERE id IN ({marks}) ORDER BY id{d.for_update}",
                  tuple(budget_ids))  # fmt: skip
    return [budget_from_row(r) for r in rows]


def refill(replica: str, p: Prepared | None, res_id: str, expires: int, now: int, s: Sizing,
           d: Dialect, budget_ids: list[str]) -> Op[Outcome]:  # fmt: skip
    """Refill this replica's slices on the path and place ``p`` (None: just resize them to what they hold).

    Denies only when the request does not fit even after every other
    replica's unused slice on a short budget was reclaimed.
    """
    if p is not None and p.a.request_id:  # a retry of an Authorize that already placed its hold
        earlier = yield from existing_reservation(p.a.request_id, p.a.key_id)
        if earlier is not None:
            return Outcome({}, earlier)
    budgets = yield from _load(list(p.scope_keys) if p is not None else [], budget_ids, d)
    want = {b.id: (p.amount(b) if p is not None else 0) for b in budgets}
    yield from lock_replicas({replica})
    folded = 0
    for b in budgets:
        folded += (yield from fold_own(b, replica, now))[0]
    if folded:  # spent moved: read it again (the rows stay locked by this transaction)
        budgets = yield from _load([], [b.id for b in budgets], d)
    lives, frees, slices = {}, {}, {}
    for b in budgets:
        lives[b.id] = yield from _live(b, replica)
        frees[b.id], slices[b.id] = yield from _room(b, replica, now)
    short = [b for b in budgets if sum(lives[b.id].values()) + want[b.id] > frees[b.id]]
    others = {r for b in short for r in slices[b.id] if r != replica}
    if others:
        yield from lock_replicas(others)
        for b in short:
            for rep in slices[b.id]:
                if rep != replica:
                    yield from shrink(b, rep)
            frees[b.id], slices[b.id] = yield from _room(b, replica, now)
    denial = None
    for b in budgets:
        used = sum(lives[b.id].values())
        if used + want[b.id] > frees[b.id] and denial is None and p is not None:
            denial = _denial(b, b.spent(now), b.hard_limit - b.spent(now) - frees[b.id], want[b.id], now)
    grants: dict[str, Grant] = {}
    for b in budgets:
        used = sum(lives[b.id].values())
        n = len(slices[b.id]) + (replica not in slices[b.id])
        amount = used if (denial is not None or p is None) else _size(used + want[b.id], frees[b.id], want[b.id], n, s)
        gen, exp = yield from _write_slice(b, replica, amount, slices[b.id].get(replica), max(expires, now + s.ttl_us))
        frac = max(0.0, (frees[b.id] - amount) / b.hard_limit) if b.hard_limit > 0 else 0.0
        grants[b.id] = Grant(amount, gen, exp, frac, lives[b.id], frees[b.id], b.hard_limit)
    if p is None or denial is not None:
        if denial is not None and p is not None:
            yield from _record_denial(p, denial, now)
        return Outcome(grants, denial)
    yield from insert_placed(p, res_id, replica, expires, now, budgets)
    for b in budgets:
        grants[b.id].live[res_id] = want[b.id]
    alerts = yield from _soft_alerts(p, budgets, frees, grants, res_id, now)
    frac = min((g.free_fraction for g in grants.values()), default=1.0)
    return Outcome(grants, Reservation(res_id, p.hold_usd, expires, alerts, frac))


def _record_denial(p: Prepared, denial: Denial, now: int) -> Op[None]:
    a = p.a
    ev = event(p.key, now, "denied", a.request_id, a.project, a.tier, a.model or p.price.model,
               (a.prompt_tokens, a.max_completion_tokens), price_version=p.price.version)  # fmt: skip
    yield from record_event(ev, None, denial.limit_id)


def _soft_alerts(p: Prepared, budgets: list[BudgetState], frees: dict[str, int], grants: dict[str, Grant],
                 res_id: str, now: int) -> Op[tuple[str, ...]]:  # fmt: skip
    """Alert when spent plus everything set aside (slices in full) crosses the soft threshold.

    Slices count in full, so under escrow the alert can come earlier than
    the spend alone would say; never later.
    """
    out = []
    for b in budgets:
        start, _ = period_bounds(b.period, now)
        used = b.hard_limit - frees[b.id] + grants[b.id].amount
        if used >= b.soft_fraction * b.hard_limit and b.soft_alerted_start != start:
            yield ("UPDATE budgets SET soft_alerted_start = ? WHERE id = ?", (start, b.id))
            a = p.a
            ev = event(p.key, now, "soft_alert", a.request_id, a.project, a.tier, a.model or p.price.model)
            yield from record_event(ev, res_id, b.id)
            out.append(b.id)
    return tuple(out)


def settle(replica: str, budget_ids: list[str], now: int, ttl_us: int, d: Dialect) -> Op[dict[str, tuple[int, list[str], int]]]:  # fmt: skip  # noqa: E501
    """Fold this replica's charges and renew its slices: {budget: (charged, settled ids, expires_at)}.

    Takes no advisory lock, so placements go on meanwhile (see fold_own).
    """
    out = {}
    for b in (yield from _load([], budget_ids, d)):
        charged, settled = yield from fold_own(b, replica, now)
        exp = now + ttl_us
        yield ("UPDATE escrow_slices SET expires_at = ? WHERE budget_id = ? AND replica_id = ? AND expires_at < ?",
               (exp, b.id, replica, exp))  # fmt: skip
        out[b.id] = (charged, settled, exp)
    return out
