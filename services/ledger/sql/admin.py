"""Control-plane and reporting SQL operations (see services.ledger.sql.common for the convention)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rationer.errors import InvalidArgument, NotFound
from services.ledger.models import (
    USAGE_KINDS,
    Budget,
    CreatedKey,
    KeyRecord,
    Org,
    Price,
    RateLimit,
    Team,
    UsageEvent,
    UsageRow,
    User,
)
from services.ledger.money import period_bounds
from services.ledger.sql import alerts
from services.ledger.sql.common import (
    BUDGET_COLS,
    EVENT_COLS,
    KEY_COLS,
    KEY_FROM,
    PRICE_COLS,
    Op,
    budget_from_row,
    budget_usage,
    event_from_row,
    key_from_row,
    load_budgets,
    load_key_by_id,
    price_from_row,
)


def ensure_org(name: str, isolate_teams: bool, now: int) -> Op[Org]:
    """Create-if-missing: the org id is its name, so retries and bootstraps are idempotent."""
    rows = yield ("SELECT id, name, isolate_teams FROM orgs WHERE id = ?", (name,))
    if not rows:
        yield ("INSERT INTO orgs (id, name, isolate_teams, created_at) VALUES (?, ?, ?, ?)",
               (name, name, int(isolate_teams), now))  # fmt: skip
        return Org(name, name, isolate_teams)
    return Org(rows[0][0], rows[0][1], bool(rows[0][2]))


def ensure_team(org_id: str, name: str, now: int) -> Op[Team]:
    if not (yield ("SELECT 1 FROM orgs WHERE id = ?", (org_id,))):
        raise NotFound(f"org {org_id!r} does not exist; create it first")
    team_id = f"{org_id}/{name}"
    if not (yield ("SELECT 1 FROM teams WHERE id = ?", (team_id,))):
        yield ("INSERT INTO teams (id, org_id, name, created_at) VALUES (?, ?, ?, ?)",
               (team_id, org_id, name, now))  # fmt: skip
    return Team(team_id, org_id, name)


def ensure_user(team_id: str, email: str, now: int) -> Op[User]:
    if not (yield ("SELECT 1 FROM teams WHERE id = ?", (team_id,))):
        raise NotFound(f"team {team_id!r} does not exist; team ids look like '<org>/<team>'")
    user_id = f"{team_id}/{email}"
    if not (yield ("SELECT 1 FROM users WHERE id = ?", (user_id,))):
        yield ("INSERT INTO users (id, team_id, email, created_at) VALUES (?, ?, ?, ?)",
               (user_id, team_id, email, now))  # fmt: skip
    return User(user_id, team_id, email)


@dataclass(frozen=True)
class NewKey:
    key_id: str
    secret: str
    secret_sha256: str
    user_id: str
    team_id: str
    service_account: str
    allowed_tiers: tuple[str, ...]
    expires_at_us: int | None
    name: str
    is_admin: bool
    project: str = ""
    role: str = "member"


def create_key(k: NewKey, now: int) -> Op[CreatedKey]:
    team_id = k.team_id
    if k.user_id:
        rows = yield ("SELECT team_id FROM users WHERE id = ?", (k.user_id,))
        if not rows:
            raise NotFound(f"user {k.user_id!r} does not exist; user ids look like '<org>/<team>/<email>'")
        if team_id and team_id != rows[0][0]:
            raise InvalidArgument(f"user {k.user_id!r} is not in team {team_id!r}")
        team_id = rows[0][0]
    rows = yield ("SELECT org_id FROM teams WHERE id = ?", (team_id,))
    if not rows:
        raise NotFound(f"team {team_id!r} does not exist; team ids look like '<org>/<team>'")
    yield (
        "INSERT INTO api_keys (id, secret_sha256, prefix, org_id, team_id, user_id, service_account,"
        " allowed_tiers, is_admin, name, created_at, expires_at, project, role)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (k.key_id, k.secret_sha256, k.secret[:10], rows[0][0], team_id, k.user_id, k.service_account,
         ",".join(k.allowed_tiers), int(k.is_admin), k.name, now, k.expires_at_us, k.project, k.role),
    )  # fmt: skip
    key = yield from load_key_by_id(k.key_id)
    assert key is not None  # inserted just above, same transaction
    return CreatedKey(key, k.secret)


def key_by_hash(secret_sha256: str) -> Op[KeyRecord | None]:
    rows = yield (f"SELECT {KEY_COLS} FROM {KEY_FROM} WHERE k.secret_sha256 = ?", (secret_sha256,))
    return key_from_row(rows[0]) if rows else None


def list_keys(org_id: str, team_id: str, include_revoked: bool) -> Op[list[KeyRecord]]:
    sql = f"SELECT {KEY_COLS} FROM {KEY_FROM} WHERE 1 = 1"
    params: list[object] = []
    if org_id:
        sql, params = sql + " AND k.org_id = ?", [*params, org_id]
    if team_id:
        sql, params = sql + " AND k.team_id = ?", [*params, team_id]
    if not include_revoked:
        sql += " AND k.revoked_at IS NULL"
    rows = yield (sql + " ORDER BY k.created_at, k.id", tuple(params))
    return [key_from_row(r) for r in rows]


def revoke_key(key_id: str, now: int) -> Op[KeyRecord]:
    if (yield from load_key_by_id(key_id)) is None:
        raise NotFound(f"API key {key_id!r} does not exist")
    yield ("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, key_id))
    key = yield from load_key_by_id(key_id)
    assert key is not None
    return key


_SCOPE_TABLE = {"org": "orgs", "team": "teams", "user": "users", "key": "api_keys"}


def check_scope(kind: str, scope_id: str) -> Op[None]:
    if kind == "project":
        org, sep, tag = scope_id.partition("/")
        if not sep or not tag:
            raise InvalidArgument(f"project scope id must be '<org>/<project>', got {scope_id!r}")
        kind, scope_id = "org", org
    if not (yield (f"SELECT 1 FROM {_SCOPE_TABLE[kind]} WHERE id = ?", (scope_id,))):
        raise NotFound(f"{kind} {scope_id!r} does not exist")


@dataclass(frozen=True)
class BudgetSpec:
    scope_kind: str
    scope_id: str
    unit: str
    period: str
    hard_limit: int
    soft_fraction: float
    alert_fractions_bp: tuple[int, ...] = ()  # () = keep the budget's (a new one: default_fractions_bp)
    default_fractions_bp: tuple[int, ...] = alerts.DEFAULT_FRACTIONS_BP


def set_budget(b: BudgetSpec, now: int) -> Op[Budget]:
    """Create or replace; then raise the alerts the spend is already past (sql.alerts, once each)."""
    yield from check_scope(b.scope_kind, b.scope_id)
    budget_id = f"budget:{b.scope_kind}:{b.scope_id}:{b.unit}:{b.period}"
    start, _ = period_bounds(b.period, now)
    lines = ",".join(map(str, b.alert_fractions_bp or b.default_fractions_bp))
    yield (
        "INSERT INTO budgets (id, scope_key, unit, period, hard_limit, soft_fraction, period_start, spent,"
        " updated_at, alert_fractions) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (id) DO UPDATE SET"
        " hard_limit = excluded.hard_limit, soft_fraction = excluded.soft_fraction,"
        " soft_alerted_start = NULL, updated_at = excluded.updated_at,"
        " alert_fractions = CASE WHEN ? = 1 THEN excluded.alert_fractions ELSE budgets.alert_fractions END",
        (budget_id, f"{b.scope_kind}:{b.scope_id}", b.unit, b.period, b.hard_limit, b.soft_fraction,
         start, now, lines, int(bool(b.alert_fractions_bp))),
    )  # fmt: skip
    state = next(s for s in (yield from load_budgets([f"{b.scope_kind}:{b.scope_id}"], None)) if s.id == budget_id)
    yield from alerts.raise_reached(state, now)
    out = yield from list_budgets(f"{b.scope_kind}:{b.scope_id}", now)
    return next(x for x in out if x.id == budget_id)


def list_budgets(scope_key: str, now: int) -> Op[list[Budget]]:
    if scope_key:
        states = yield from load_budgets([scope_key], None)
    else:
        states = [budget_from_row(r) for r in (yield (f"SELECT {BUDGET_COLS} FROM budgets ORDER BY id", ()))]
    use = yield from budget_usage([s.id for s in states], now)
    return [s.to_budget(now, use.get(s.id, (0, 0))[1], use.get(s.id, (0, 0))[0]) for s in states]


def set_price(tier: str, model: str, inp: int, out: int, is_reference: bool, now: int,
              cache: tuple[int | None, int | None] = (None, None)) -> Op[Price]:  # fmt: skip
    """``cache``: the cache read and creation rates (None: the input price)."""
    rows = yield ("SELECT MAX(version) FROM prices WHERE tier = ?", (tier,))
    version = int(rows[0][0] or 0) + 1
    if not is_reference:
        # A new version of the reference tier stays the reference.
        ref = yield ("SELECT tier FROM prices WHERE is_reference = 1 ORDER BY effective_from DESC,"
                     " version DESC LIMIT 1", ())  # fmt: skip
        is_reference = bool(ref) and ref[0][0] == tier
    yield (
        f"INSERT INTO prices ({PRICE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (tier, model, inp, out, version, now, int(is_reference), *cache),
    )
    return Price(tier, model, inp, out, version, now, is_reference, *cache)


def list_prices() -> Op[list[Price]]:
    rows = yield (
        f"SELECT {PRICE_COLS} FROM prices p WHERE version = (SELECT MAX(version) FROM prices q"
        " WHERE q.tier = p.tier) ORDER BY tier",
        (),
    )
    return [price_from_row(r) for r in rows]


def seed_prices(prices: list[Price], reference_tier: str, now: int) -> Op[int]:
    """Insert version 1 of each configured tier that has no price yet."""
    added = 0
    for p in prices:
        if (yield ("SELECT 1 FROM prices WHERE tier = ?", (p.tier,))):
            continue
        yield from set_price(p.tier, p.model, p.input_per_million, p.output_per_million,
                             p.tier == reference_tier, now)  # fmt: skip
        added += 1
    return added


def set_rate_limit(limit: RateLimit) -> Op[RateLimit]:
    yield from check_scope(limit.scope_kind, limit.scope_id)
    yield (
        "INSERT INTO rate_limits (scope_key, requests_per_minute, tokens_per_minute) VALUES (?, ?, ?)"
        " ON CONFLICT (scope_key) DO UPDATE SET requests_per_minute = excluded.requests_per_minute,"
        " tokens_per_minute = excluded.tokens_per_minute",
        (f"{limit.scope_kind}:{limit.scope_id}", limit.requests_per_minute, limit.tokens_per_minute),
    )
    return limit


def all_rate_limits() -> Op[list[RateLimit]]:
    rows = yield ("SELECT scope_key, requests_per_minute, tokens_per_minute FROM rate_limits", ())
    out = []
    for key, rpm, tpm in rows:
        kind, _, sid = str(key).partition(":")
        out.append(RateLimit(kind, sid, int(rpm), int(tpm)))
    return out


_GROUP_COLUMNS = {"team": "team_id", "user": "user_id", "project": "project", "model": "model",
                  "day": "day", "tier": "tier", "org": "org_id", "key": "key_id"}  # fmt: skip
# Events that record a refusal or an alert rather than an answer.
SIGNAL_KINDS = ("denied", "soft_alert", "wrong_hit")
_SCOPE_COLUMNS = {"org": "org_id", "team": "team_id", "user": "user_id", "key": "key_id"}


@dataclass(frozen=True)
class UsageQuery:
    scope_kind: str  # "" = everything
    scope_id: str
    start_us: int | None
    end_us: int | None
    group_by: tuple[str, ...]
    current_period: str = ""  # "daily" | "monthly": the ledger's current one, when start/end are unset


def _where(scope_kind: str, scope_id: str, start: int | None, end: int | None) -> tuple[str, list[object]]:
    sql, params = " WHERE 1 = 1", list[object]()
    if scope_kind == "project":
        org, _, tag = scope_id.partition("/")
        sql, params = sql + " AND org_id = ? AND project = ?", [org, tag]
    elif scope_kind:
        sql, params = sql + f" AND {_SCOPE_COLUMNS[scope_kind]} = ?", [scope_id]
    if start is not None:
        sql, params = sql + " AND time >= ?", [*params, start]
    if end is not None:
        sql, params = sql + " AND time < ?", [*params, end]
    return sql, params


def _when(cond: str, value: str) -> str:
    return f"SUM(CASE WHEN {cond} THEN {value} ELSE 0 END)"


def usage(q: UsageQuery) -> Op[list[UsageRow]]:
    cols = [_GROUP_COLUMNS[g] for g in q.group_by]
    where, params = _where(q.scope_kind, q.scope_id, q.start_us, q.end_us)
    served_kinds = ", ".join(f"'{k}'" for k in USAGE_KINDS)
    served = f"kind IN ({served_kinds})"
    kinds = ", ".join(f"'{k}'" for k in (*USAGE_KINDS, *SIGNAL_KINDS))
    # Denials and soft alerts are counted beside the usage, never in it.
    sums = [_when(served, v) for v in ("1", "prompt_tokens", "completion_tokens", "cost", "counterfactual_cost",
                                       "cache_hit", "overage")]  # fmt: skip
    sums += [_when("kind = 'cache_hit'", "counterfactual_cost - cost"), _when("kind = 'denied'", "1"),
             _when("kind = 'soft_alert'", "1"), _when("kind = 'wrong_hit'", "1")]  # fmt: skip
    group = f" GROUP BY {', '.join(cols)} ORDER BY {', '.join(cols)}" if cols else ""
    rows = yield (f"SELECT {', '.join([*cols, *sums])} FROM events{where} AND kind IN ({kinds}){group}",
                  tuple(params))  # fmt: skip
    return usage_rows(rows, q.group_by)


def usage_rows(rows: Any, group_by: Sequence[str]) -> list[UsageRow]:
    """``GROUP BY`` rows (group columns, then the sums) as usage rows; an aggregate over no rows is dropped."""
    out, n = [], len(group_by)
    for r in rows:
        nums = [int(x or 0) for x in r[n:]]
        if nums[0] == 0 and not any(nums[-3:]):
            continue  # an empty aggregate over no rows
        out.append(UsageRow(dict(zip(group_by, (str(x) for x in r[:n]), strict=True)), *nums))
    return out


def list_events(start: int | None, end: int | None, kind: str, limit: int) -> Op[list[UsageEvent]]:
    where, params = _where("", "", start, end)
    if kind:
        where, params = where + " AND kind = ?", [*params, kind]
    rows = yield (f"SELECT {EVENT_COLS} FROM events{where} ORDER BY time, id LIMIT ?", (*params, limit))
    return [event_from_row(r) for r in rows]
