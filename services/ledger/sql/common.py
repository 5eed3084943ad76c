"""Shared pieces of the ledger's SQL operations.

Every operation is written once, sans-IO, as a generator that yields
``(sql, params)`` and receives the result rows. The SQLite driver runs it on
its writer thread inside a group-commit batch; the PostgreSQL driver runs it on
an async connection in its own transaction. SQL uses ``?`` placeholders (the
PostgreSQL driver rewrites them) and only syntax both databases accept; the one
difference, row locks, comes in through :class:`Dialect`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from rationer.errors import NotFound, PermissionDenied, Unauthenticated
from services.ledger.models import Budget, KeyRecord, Price, UsageEvent
from services.ledger.money import period_bounds, to_datetime, utc_day

T = TypeVar("T")
Query = tuple[str, tuple[Any, ...]]
Rows = list[tuple[Any, ...]]
Op = Generator[Query, Rows, T]


@dataclass(frozen=True)
class Dialect:
    name: str
    for_update: str  # " FOR UPDATE" on PostgreSQL; SQLite serializes writers itself


SQLITE = Dialect("sqlite", "")
POSTGRES = Dialect("postgres", " FOR UPDATE")

KEY_COLS = (
    "k.id, k.prefix, k.org_id, k.team_id, k.user_id, k.service_account, k.allowed_tiers, k.is_admin,"
    " k.name, k.created_at, k.expires_at, k.revoked_at, o.isolate_teams, k.project, k.role"
)
KEY_FROM = "api_keys k JOIN orgs o ON o.id = k.org_id"
EVENT_COLS = (
    "id, time, kind, request_id, org_id, team_id, user_id, key_id, project, tier, model,"
    " prompt_tokens, completion_tokens, cost, counterfactual_cost, cache_hit, latency_ms, price_version, detail,"
    " overage, overage_tokens"
)
PRICE_COLS = ("tier, model, input_per_million, output_per_million, version, effective_from, is_reference,"
              " cache_read_per_million, cache_creation_per_million")  # fmt: skip
BUDGET_COLS = ("id, scope_key, unit, period, hard_limit, soft_fraction, period_start, spent, soft_alerted_start,"
               " alert_fractions")


def key_from_row(row: tuple[Any, ...]) -> KeyRecord:
    tiers = tuple(t for t in str(row[6]).split(",") if t)
    return KeyRecord(
        key_id=row[0], prefix=row[1], org_id=row[2], team_id=row[3], user_id=row[4],
        service_account=row[5], allowed_tiers=tiers, is_admin=bool(row[7]), name=row[8],
        created_at_us=int(row[9]),
        expires_at_us=None if row[10] is None else int(row[10]),
        revoked_at_us=None if row[11] is None else int(row[11]),
        isolate_teams=bool(row[12]), project=row[13] or "", role=row[14] or "member",
    )  # fmt: skip


def event_from_row(row: tuple[Any, ...]) -> UsageEvent:
    return UsageEvent(
        event_id=row[0], time_us=int(row[1]), kind=row[2], request_id=row[3], org_id=row[4],
        team_id=row[5], user_id=row[6], key_id=row[7], project=row[8], tier=row[9], model=row[10],
        prompt_tokens=int(row[11]), completion_tokens=int(row[12]), cost=int(row[13]),
        counterfactual_cost=int(row[14]), cache_hit=bool(row[15]), latency_ms=int(row[16]),
        price_version=int(row[17]), detail=row[18] or "", overage=int(row[19]), overage_tokens=int(row[20]),
    )  # fmt: skip


def price_from_row(row: tuple[Any, ...]) -> Price:
    return Price(row[0], row[1], int(row[2]), int(row[3]), int(row[4]), int(row[5]), bool(row[6]),
                 None if row[7] is None else int(row[7]), None if row[8] is None else int(row[8]))  # fmt: skip


def insert_event(ev: UsageEvent, reservation_id: str | None, detail: str = "", record_id: str | None = None) -> Query:
    return (
        "INSERT INTO events (id, time, day, kind, request_id, reservation_id, org_id, team_id, user_id,"
        " key_id, project, tier, model, prompt_tokens, completion_tokens, cost, counterfactual_cost,"
        " cache_hit, latency_ms, price_version, detail, overage, overage_tokens, record_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ev.event_id, ev.time_us, utc_day(ev.time_us), ev.kind, ev.request_id, reservation_id,
            ev.org_id, ev.team_id, ev.user_id, ev.key_id, ev.project, ev.tier, ev.model,
            ev.prompt_tokens, ev.completion_tokens, ev.cost, ev.counterfactual_cost,
            int(ev.cache_hit), ev.latency_ms, ev.price_version, detail, ev.overage, ev.overage_tokens,
            record_id,
        ),
    )  # fmt: skip


def load_key_by_id(key_id: str) -> Op[KeyRecord | None]:
    rows = yield (f"SELECT {KEY_COLS} FROM {KEY_FROM} WHERE k.id = ?", (key_id,))
    return key_from_row(rows[0]) if rows else None


def require_active(key: KeyRecord | None, now_us: int, what: str) -> KeyRecord:
    """The key, or UNAUTHENTICATED saying exactly why it cannot be used."""
    if key is None:
        raise Unauthenticated(f"unknown API key {what}; create one with `rationer keys create`")
    if key.revoked_at_us is not None:
        raise Unauthenticated(
            f"API key {key.key_id} was revoked at {to_datetime(key.revoked_at_us).isoformat()}"
        )
    if key.expires_at_us is not None and key.expires_at_us <= now_us:
        raise Unauthenticated(
            f"API key {key.key_id} expired at {to_datetime(key.expires_at_us).isoformat()}"
        )
    return key


def bound_project(key: KeyRecord, requested: str) -> str:
    """The project a request of this key counts against.

    A key bound to a project always uses it: no tag means the key's project,
    another tag is refused (else leaving out or changing the header would
    skip the project's budget). An unbound key's tag is taken as given.
    """
    if not key.project:
        return requested
    if requested and requested != key.project:
        raise PermissionDenied(
            f"API key {key.key_id} is bound to project {key.project!r} and may not send project "
            f"{requested!r}; leave the project out (it is implied) or use a key of that project",
            reason="project_not_allowed",
        )
    return key.project


def current_price(tier: str) -> Op[Price]:
    rows = yield (f"SELECT {PRICE_COLS} FROM prices WHERE tier = ? ORDER BY version DESC LIMIT 1", (tier,))
    if not rows:
        raise NotFound(f"unknown tier {tier!r}; ListPrices shows the priced tiers")
    return price_from_row(rows[0])


def price_at_version(tier: str, version: int) -> Op[Price]:
    rows = yield (f"SELECT {PRICE_COLS} FROM prices WHERE tier = ? AND version = ?", (tier, version))
    if not rows:
        return (yield from current_price(tier))
    return price_from_row(rows[0])


def reference_price() -> Op[Price | None]:
    """Current price of the tier most recently flagged as the reference."""
    rows = yield (
        "SELECT tier FROM prices WHERE is_reference = 1 ORDER BY effective_from DESC, version DESC LIMIT 1",
        (),
    )
    if not rows:
        return None
    return (yield from current_price(rows[0][0]))


def path_scope_keys(org_id: str, team_id: str, user_id: str, key_id: str, project: str) -> list[str]:
    """Every scope whose budgets a request must pass: key, user, team, org, project."""
    out = [f"key:{key_id}", f"team:{team_id}", f"org:{org_id}"]
    if user_id:
        out.append(f"user:{user_id}")
    if project:
        out.append(f"project:{org_id}/{project}")
    return out


@dataclass(frozen=True)
class BudgetState:
    id: str
    scope_key: str
    unit: str
    period: str
    hard_limit: int
    soft_fraction: float
    period_start: int
    spent_raw: int
    soft_alerted_start: int | None
    alert_fractions: str = "5000,8000,9500"  # basis points of the hard limit (sql.alerts)

    def spent(self, now_us: int) -> int:
        # A row still stamped with an earlier period has spent nothing in this
        # one; a row already stamped with a later one (another replica's
        # clock ran ahead) counts, since periods only roll forward.
        start, _ = period_bounds(self.period, now_us)
        return self.spent_raw if self.period_start >= start else 0

    def to_budget(self, now_us: int, held: int, unfolded: int = 0) -> Budget:
        kind, _, scope_id = self.scope_key.partition(":")
        _, end = period_bounds(self.period, now_us)
        return Budget(
            self.id, kind, scope_id, self.unit, self.period, self.hard_limit,
            self.soft_fraction, self.spent(now_us) + unfolded, held, end,
            tuple(int(bp) / 10_000 for bp in self.alert_fractions.split(",") if bp),
        )  # fmt: skip


def budget_from_row(row: tuple[Any, ...]) -> BudgetState:
    return BudgetState(
        row[0], row[1], row[2], row[3], int(row[4]), float(row[5]), int(row[6]), int(row[7]),
        None if row[8] is None else int(row[8]), str(row[9]),
    )  # fmt: skip


def load_budgets(scope_keys: list[str], d: Dialect | None) -> Op[list[BudgetState]]:
    """Budgets of these scopes in id order; locked (PostgreSQL) when ``d`` is given."""
    if not scope_keys:
        return []
    marks = ", ".join("?" for _ in scope_keys)
    lock = d.for_update if d is not None else ""
    rows = yield (
        f"SELECT {BUDGET_COLS} FROM budgets WHERE scope_key IN ({marks}) ORDER BY id{lock}",
        tuple(scope_keys),
    )
    return [budget_from_row(r) for r in rows]


def active_holds(budget_ids: list[str], now_us: int) -> Op[dict[str, int]]:
    """What is set aside per budget: unexpired holds plus outstanding escrow slices.

    Expired holds never count. A slice counts in full (its replica's holds and
    unfolded charges are inside it) until it is folded, returned or reaped.
    """
    if not budget_ids:
        return {}
    marks = ", ".join("?" for _ in budget_ids)
    rows = yield (
        f"SELECT budget_id, SUM(amount) FROM holds WHERE budget_id IN ({marks}) AND expires_at > ?"
        " GROUP BY budget_id"
        f" UNION ALL SELECT budget_id, SUM(amount) FROM escrow_slices WHERE budget_id IN ({marks})"
        " GROUP BY budget_id",
        (*budget_ids, now_us, *budget_ids),
    )
    out: dict[str, int] = {}
    for r in rows:
        out[r[0]] = out.get(r[0], 0) + int(r[1])
    return out


def budget_usage(budget_ids: list[str], now_us: int) -> Op[dict[str, tuple[int, int]]]:
    """What budgets really use, for reports and headroom: {id: (unfolded charges, live holds)}.

    Admission counts escrow slices in full (``active_holds``); a report counts
    what is spent or held inside them: charges not yet folded into ``spent``
    are spent, live uncharged escrow holds are held, and the unused rest of a
    slice is neither (any replica can reclaim it).
    """
    if not budget_ids:
        return {}
    marks = ", ".join("?" for _ in budget_ids)
    rows = yield (
        f"SELECT budget_id, 0, SUM(amount) FROM holds WHERE budget_id IN ({marks}) AND expires_at > ?"
        " GROUP BY budget_id"
        " UNION ALL SELECT budget_id, SUM(COALESCE(charge, 0)),"
        " SUM(CASE WHEN charge IS NULL AND expires_at > ? THEN amount ELSE 0 END)"
        f" FROM escrow_holds WHERE budget_id IN ({marks}) GROUP BY budget_id",
        (*budget_ids, now_us, now_us, *budget_ids),
    )
    out: dict[str, tuple[int, int]] = {}
    for bid, spent, held in rows:
        was = out.get(bid, (0, 0))
        out[bid] = (was[0] + int(spent), was[1] + int(held))
    return out
