"""Data-plane SQL operations: authorize, commit, release, reads (cache hits: cache_hits).

See services.ledger.sql.common for the sans-IO convention. Domain errors raised here roll the
operation back; a budget denial is *returned* so its audit event commits.
"""

from __future__ import annotations

import uuid

from rationer.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from services.ledger.calls import CommitCall
from services.ledger.models import (
    EMBEDDINGS_TIER,
    AuthorizeInput,
    CommitResult,
    Denial,
    Headroom,
    KeyRecord,
    ReleaseResult,
    Reservation,
    UsageEvent,
)
from services.ledger.money import cost_nano_usd, format_usd, period_bounds, to_datetime
from services.ledger.sql.alerts import raise_crossings
from services.ledger.sql.charges import Cap, cap_charge, charge_budgets
from services.ledger.sql.common import (
    EVENT_COLS,
    BudgetState,
    Dialect,
    Op,
    active_holds,
    budget_usage,
    current_price,
    event_from_row,
    load_budgets,
    load_key_by_id,
    path_scope_keys,
    price_at_version,
    require_active,
)
from services.ledger.sql.escrow_settle import settle_escrow
from services.ledger.sql.reference import counterfactual
from services.ledger.sql.rollups import record_event


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def event(key: KeyRecord, now: int, kind: str, request_id: str, project: str, tier: str, model: str,
           tokens: tuple[int, int] = (0, 0), cost: int = 0, cf: int = 0, cache_hit: bool = False,
           latency_ms: int = 0, price_version: int = 0) -> UsageEvent:  # fmt: skip
    return UsageEvent(
        new_id("e"), now, kind, request_id, key.org_id, key.team_id, key.user_id, key.key_id,
        project, tier, model, tokens[0], tokens[1], cost, cf, cache_hit, latency_ms, price_version,
    )  # fmt: skip


def _denial(b: BudgetState, spent: int, held: int, amount: int, now: int) -> Denial:
    _, end = period_bounds(b.period, now)
    fmt = format_usd if b.unit == "usd" else (lambda n: f"{n} tokens")
    when = f"resets at {to_datetime(end).isoformat()}" if end is not None else "lifetime budget, never resets"
    desc = (
        f"{b.id}: spent {fmt(spent)} + held {fmt(held)} + this request {fmt(amount)} would exceed "
        f"the hard limit {fmt(b.hard_limit)} ({when})"
    )
    return Denial(b.id, desc, end)


def reused_request_id(request_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"request id {request_id!r} was already used by another request of this API key; send a "
        "unique x-request-id per request, or none and the gateway makes one"
    )


def existing_reservation(request_id: str, key_id: str) -> Op[Reservation | None]:
    """The reservation an earlier Authorize of this key with this request id placed, if any.

    Request ids are scoped to the key: another key's ids are never looked at,
    so no answer can tell whether someone else used one. The id of one of
    this key's cache hits is taken too (one request id, one request).
    """
    rows = yield (
        "SELECT id, held_usd, expires_at FROM reservations WHERE key_id = ? AND request_id = ?"
        " UNION ALL SELECT NULL, 0, 0 FROM events WHERE key_id = ? AND request_id = ? AND kind = 'cache_hit'",
        (key_id, request_id, key_id, request_id),
    )
    for row in rows:
        if row[0] is not None:
            return Reservation(row[0], int(row[1]), int(row[2]), replayed=True)
    if rows:
        raise reused_request_id(request_id)
    return None


def authorize(a: AuthorizeInput, ttl_us: int, now: int, d: Dialect) -> Op[Reservation | Denial]:
    if a.request_id:
        earlier = yield from existing_reservation(a.request_id, a.key_id)
        if earlier is not None:
            return earlier
    key = require_active((yield from load_key_by_id(a.key_id)), now, a.key_id)
    if key.allowed_tiers and a.tier not in key.allowed_tiers and a.tier != EMBEDDINGS_TIER:
        raise PermissionDenied(
            f"API key {key.key_id} may not use tier {a.tier!r}; allowed: {', '.join(key.allowed_tiers)}"
        )
    price = yield from current_price(a.tier)
    hold_usd = cost_nano_usd(a.prompt_tokens, a.max_completion_tokens, price)
    hold_tokens = a.prompt_tokens + a.max_completion_tokens
    res_id = new_id("r")
    expires = now + ttl_us
    # The reservation row alone counts against nothing (holds do), so it is
    # written before the budget locks are taken: less time holding them.
    yield (
        "INSERT INTO reservations (id, request_id, key_id, org_id, team_id, user_id, project, tier, model,"
        " price_version, held_usd, held_tokens, state, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'held', ?, ?)",
        (res_id, a.request_id or None, key.key_id, key.org_id, key.team_id, key.user_id, a.project,
         a.tier, a.model or price.model, price.version, hold_usd, hold_tokens, now, expires),
    )  # fmt: skip
    budgets = yield from load_budgets(
        path_scope_keys(key.org_id, key.team_id, key.user_id, key.key_id, a.project), d
    )
    # A separate statement after the lock: its snapshot sees every hold
    # committed by whoever held the lock before us.
    held = yield from active_holds([b.id for b in budgets], now)
    fractions: list[float] = []
    alerts: list[BudgetState] = []
    for b in budgets:
        amount = hold_usd if b.unit == "usd" else hold_tokens
        spent, h = b.spent(now), held.get(b.id, 0)
        if spent + h + amount > b.hard_limit:
            denial = _denial(b, spent, h, amount, now)
            yield ("DELETE FROM reservations WHERE id = ?", (res_id,))
            ev = event(key, now, "denied", a.request_id, a.project, a.tier, a.model or price.model,
                        (a.prompt_tokens, a.max_completion_tokens), price_version=price.version)  # fmt: skip
            yield from record_event(ev, None, denial.limit_id)
            return denial
        used = spent + h + amount
        fractions.append(max(0.0, 1.0 - used / b.hard_limit) if b.hard_limit > 0 else 0.0)
        start, _ = period_bounds(b.period, now)
        if used >= b.soft_fraction * b.hard_limit and b.soft_alerted_start != start:
            alerts.append(b)
    if budgets:
        values = ", ".join("(?, ?, ?, ?)" for _ in budgets)
        params: list[object] = []
        for b in budgets:
            params += [res_id, b.id, hold_usd if b.unit == "usd" else hold_tokens, expires]
        yield (f"INSERT INTO holds (reservation_id, budget_id, amount, expires_at) VALUES {values}",
               tuple(params))  # fmt: skip
    for b in alerts:
        start, _ = period_bounds(b.period, now)
        yield ("UPDATE budgets SET soft_alerted_start = ? WHERE id = ?", (start, b.id))
        ev = event(key, now, "soft_alert", a.request_id, a.project, a.tier, a.model or price.model)
        yield from record_event(ev, res_id, b.id)
    return Reservation(res_id, hold_usd, expires, tuple(b.id for b in alerts), min(fractions, default=1.0))


RES_COLS = (
    "id, key_id, org_id, team_id, user_id, project, tier, model, price_version, state, expires_at,"
    " event_id, request_id, held_tokens, held_usd, escrow_replica"
)


def _load_reservation(res_id: str, key_id: str, d: Dialect) -> Op[tuple[str, ...]]:
    rows = yield (f"SELECT {RES_COLS} FROM reservations WHERE id = ?{d.for_update}", (res_id,))
    if not rows:
        raise NotFound(f"reservation {res_id!r} does not exist")
    if rows[0][1] != key_id:
        raise PermissionDenied(f"reservation {res_id!r} belongs to another API key")
    return tuple(rows[0])


def load_event(event_id: str) -> Op[UsageEvent]:
    rows = yield (f"SELECT {EVENT_COLS} FROM events WHERE id = ?", (event_id,))
    return event_from_row(rows[0])


def commit(a: CommitCall, now: int, d: Dialect) -> Op[CommitResult]:
    r = yield from _load_reservation(a.reservation_id, a.key_id, d)
    _, key_id, org_id, team_id, user_id, project, r_tier, r_model, r_version, state, expires, event_id, rq, h, hu, \
        escrow = r
    if state == "committed":
        return CommitResult((yield from load_event(str(event_id))), replayed=True)
    if state == "released":
        raise FailedPrecondition(f"reservation {a.reservation_id} was released; authorize a new one")
    late = state == "expired" or int(expires) <= now
    if late and not a.bill_late:
        raise FailedPrecondition(
            f"reservation {a.reservation_id} expired at {to_datetime(int(expires)).isoformat()} and its "
            "hold was freed; authorize a new one (or pass a longer ttl to Authorize). If the model did "
            "answer, set bill_late to record the charge anyway"
        )
    # An expired hold stopped counting against budgets, but the model did
    # answer and its provider bills us: refusing the charge would lose real
    # money from the chargeback. So a late commit is billed, within the room
    # the budgets have left, and marked in the event detail.
    tier, model = a.tier or r_tier, a.model or r_model
    if tier == r_tier:
        price = yield from price_at_version(tier, int(r_version))
    else:
        yield from _check_tier_allowed(key_id, tier)
        price = yield from current_price(tier)
    cost = cost_nano_usd(a.prompt_tokens, a.completion_tokens, price, cache_read=a.cache_read_tokens,
                         cache_creation=a.cache_creation_tokens)  # fmt: skip
    tokens = a.prompt_tokens + a.completion_tokens
    cf = yield from counterfactual(a, cost)
    scope_keys = path_scope_keys(org_id, team_id, user_id, key_id, project)
    if escrow is not None:  # held in a replica's slice (see sql/escrow_settle)
        cap, direct, locked = yield from settle_escrow(a.reservation_id, scope_keys, (cost, tokens),
                                               (int(hu), int(h)), late, now, d)  # fmt: skip
    else:
        cap, direct, locked = yield from _settle_central(a.reservation_id, scope_keys, cost, tokens, now, d)
    notes = _commit_notes(a, int(expires) if late else None, cost - int(hu), cap, cost, tokens)
    kind = "embedding" if r_tier == EMBEDDINGS_TIER else "charge"
    if kind == "embedding":
        cf = cost  # no chat model would have done this: no savings to claim
    ev = UsageEvent(
        new_id("e"), now, kind, rq or "", org_id, team_id, user_id, key_id, project, tier, model,
        a.prompt_tokens, a.completion_tokens, cap.cost, cf, False, a.latency_ms, price.version, "; ".join(notes),
        overage=cost - cap.cost, overage_tokens=tokens - cap.tokens,
    )  # fmt: skip
    yield from record_event(ev, a.reservation_id, ev.detail)
    yield (
        "UPDATE reservations SET state = 'committed', settled_at = ?, event_id = ? WHERE id = ?",
        (now, ev.event_id, a.reservation_id),
    )
    if direct is not None:
        yield charge_budgets(scope_keys, direct.cost, direct.tokens, now, d)
        # Same transaction, budget rows still locked: a line is crossed once (sql.alerts).
        # Under escrow the part within the hold crosses lines when it is folded (sql.escrow_refill).
        yield from raise_crossings(locked, direct.cost, direct.tokens, org_id, now)
    return CommitResult(ev, replayed=False, unused_tokens=max(0, int(h) - tokens))


def _settle_central(res_id: str, scope_keys: list[str], cost: int, tokens: int, now: int,
                    d: Dialect) -> Op[tuple[Cap, Cap | None, list[BudgetState]]]:  # fmt: skip
    # The own hold goes first, so the room computed below is what the
    # budgets have without it (and with every other call's live hold).
    yield ("DELETE FROM holds WHERE reservation_id = ?", (res_id,))
    budgets = yield from load_budgets(scope_keys, d)
    cap = yield from cap_charge(budgets, cost, tokens, now)
    return cap, (cap if budgets else None), budgets


def _check_tier_allowed(key_id: str, tier: str) -> Op[None]:
    key = yield from load_key_by_id(key_id)
    if key is not None and key.allowed_tiers and tier not in key.allowed_tiers:
        raise PermissionDenied(
            f"API key {key_id} may not use tier {tier!r}; commit on the reserved tier or one of: "
            f"{', '.join(key.allowed_tiers)}"
        )


def _commit_notes(a: CommitCall, expired_at: int | None, over_hold: int, cap: Cap, cost: int,
                  tokens: int) -> list[str]:  # fmt: skip
    notes = [f"fallbacks={a.fallbacks}"] if a.fallbacks else []
    if a.finish_note:
        notes.append(f"finish={a.finish_note}")
    if expired_at is not None:
        notes.append(f"late: hold expired at {to_datetime(expired_at).isoformat()}")
    if over_hold > 0:
        # The true usage beat the hold. It is charged as far as the budgets
        # have room (see _cap); the event says so either way.
        notes.append(f"over hold by {format_usd(over_hold)} (usage above the hold)")
    if cap.cost < cost:
        notes.append(f"overage {format_usd(cost - cap.cost)} not charged: {cap.cost_by} is at its hard limit")
    if cap.tokens < tokens:
        notes.append(f"overage {tokens - cap.tokens} tokens not counted: {cap.tokens_by} is at its hard limit")
    return notes


def release(res_id: str, key_id: str, now: int, d: Dialect) -> Op[ReleaseResult]:
    r = yield from _load_reservation(res_id, key_id, d)
    team_id, state, expires = str(r[3]), r[9], int(r[10])
    if state == "committed":
        raise FailedPrecondition(f"reservation {res_id} is already committed; it cannot be released")
    if state == "released":
        return ReleaseResult(False, team_id, 0)
    # A release is the caller's final word that nothing was used, so it is
    # recorded even on an expired hold: a stray later Commit is then refused.
    yield ("UPDATE reservations SET state = 'released', settled_at = ? WHERE id = ?", (now, res_id))
    yield ("DELETE FROM holds WHERE reservation_id = ?", (res_id,))
    if r[15] is not None:
        yield ("DELETE FROM escrow_holds WHERE reservation_id = ?", (res_id,))
    return ReleaseResult(state == "held" and expires > now, team_id, int(r[13]))


def headroom(key_id: str, project: str, now: int) -> Op[list[Headroom]]:
    key = require_active((yield from load_key_by_id(key_id)), now, key_id)
    budgets = yield from load_budgets(
        path_scope_keys(key.org_id, key.team_id, key.user_id, key.key_id, project), None
    )
    use = yield from budget_usage([b.id for b in budgets], now)
    out: list[Headroom] = []
    for b in budgets:
        extra, held = use.get(b.id, (0, 0))
        remaining = max(0, b.hard_limit - b.spent(now) - extra - held)
        frac = min(1.0, remaining / b.hard_limit) if b.hard_limit > 0 else 0.0
        kind, _, scope_id = b.scope_key.partition(":")
        out.append(Headroom(b.id, kind, scope_id, b.unit, frac, remaining))
    return out


def sweep_expired(now: int, limit: int = 5000) -> Op[int]:
    """Hygiene only: expired holds already stopped counting when they expired."""
    rows = yield (
        "SELECT id FROM reservations WHERE state = 'held' AND expires_at <= ? LIMIT ?", (now, limit)
    )
    if not rows:
        return 0
    ids = [r[0] for r in rows]
    marks = ", ".join("?" for _ in ids)
    yield (
        f"UPDATE reservations SET state = 'expired', settled_at = ? WHERE state = 'held' AND id IN ({marks})",
        (now, *ids),
    )
    yield (f"DELETE FROM holds WHERE reservation_id IN ({marks})", tuple(ids))
    return len(ids)
