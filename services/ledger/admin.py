"""The ledger's control plane: principals, keys, budgets, prices, rate limits.

Plain Python: no gRPC. Secrets are generated here, returned once and stored
only as SHA-256 (see docs/ledger.md for why a fast hash is right for them).
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass

from rationer.errors import InvalidArgument, PermissionDenied, Unauthenticated
from services.ledger import roles, validate
from services.ledger.ledger import Ledger, hash_secret
from services.ledger.models import (
    PERIODS,
    SCOPE_KINDS,
    UNITS,
    Budget,
    CreatedKey,
    KeyRecord,
    Org,
    Price,
    Principal,
    RateLimit,
    Team,
    UsageEvent,
    UsageRow,
    User,
)
from services.ledger.money import format_usd, period_bounds
from services.ledger.roles import Actor
from services.ledger.settings import LedgerSettings
from services.ledger.sql import admin as sql_admin
from services.ledger.sql import alerts, audit
from services.ledger.sql import console as sql_console
from services.ledger.sql import reports as sql_reports
from services.ledger.sql.common import load_key_by_id

SECRET_PREFIX = "rk-"
MAX_LIMIT = 10**18
MAX_KEY_TTL_S = 100 * 365 * 86_400  # 100 years


@dataclass(frozen=True)
class KeySpec:
    user_id: str = ""
    team_id: str = ""
    service_account: str = ""
    allowed_tiers: tuple[str, ...] = ()
    ttl_s: float = 0.0
    name: str = ""
    admin: bool = False
    project: str = ""  # bind the key to this project tag
    role: str = ""  # roles.ROLES; "" = admin when ``admin`` else member


class LedgerAdmin:
    def __init__(self, ledger: Ledger, settings: LedgerSettings) -> None:
        self._ledger = ledger
        self._store = ledger.store
        self._s = settings

    async def caller(self, bearer: str) -> Principal | None:
        """Resolve a bearer credential: None for the admin token, else the key's principal."""
        if not bearer:
            raise Unauthenticated("missing credential: send `authorization: Bearer <admin token or key>`")
        token = self._s.admin_token
        if token and hmac.compare_digest(bearer.encode(), token.encode()):
            return None
        return await self._ledger.authenticate(bearer)

    async def actor(self, bearer: str) -> Actor:
        """The caller with its role (the admin token is an admin)."""
        principal = await self.caller(bearer)
        if principal is None:
            return roles.ADMIN_TOKEN
        key = await self._store.read(lambda: load_key_by_id(principal.key_id))
        role = key.role if key is not None else "member"
        return Actor(role, principal.key_id, principal.org_id, principal.team_id)

    async def require(self, bearer: str, allowed: frozenset[str], what: str) -> Actor:
        actor = await self.actor(bearer)
        roles.require(actor, allowed, what)
        return actor

    async def require_admin(self, bearer: str, what: str = "use the ledger admin API") -> Actor:
        actor = await self.actor(bearer)
        if actor.role != "admin":
            raise PermissionDenied(
                f"API key {actor.key_id} is not an admin key (role {actor.role!r}) and may not {what}; "
                "use the ledger admin token or a key made with `rationer keys create --role admin`",
                reason="role",
            )
        return actor

    async def create_org(self, name: str, isolate_teams: bool = False, actor: str = "system") -> Org:
        validate.name("org name", name)
        now = self._ledger.now()
        return await self._store.write(lambda: audit.audited(
            actor, "orgs.create", lambda o: o.id, sql_admin.ensure_org(name, isolate_teams, now), now))  # fmt: skip

    async def create_team(self, org_id: str, name: str, actor: str = "system") -> Team:
        validate.text("org_id", org_id, 64, required=True)
        validate.name("team name", name)
        now = self._ledger.now()
        return await self._store.write(lambda: audit.audited(
            actor, "teams.create", lambda t: t.id, sql_admin.ensure_team(org_id, name, now), now))  # fmt: skip

    async def create_user(self, team_id: str, email: str, actor: str = "system") -> User:
        validate.text("team_id", team_id, 130, required=True)
        validate.email(email)
        now = self._ledger.now()
        return await self._store.write(lambda: audit.audited(
            actor, "users.create", lambda u: u.id, sql_admin.ensure_user(team_id, email, now), now))  # fmt: skip

    async def create_key(self, spec: KeySpec, actor: str = "system") -> CreatedKey:
        role = roles.check_role(spec.role) if spec.role else ("admin" if spec.admin else "member")
        if spec.admin and role != "admin":
            raise InvalidArgument(f"admin=true contradicts role {role!r}; give one of them")
        if bool(spec.user_id) == bool(spec.service_account):
            raise InvalidArgument(
                "give exactly one of user_id, or team_id with service_account (a team service key)"
            )
        if spec.service_account:
            validate.name("service_account", spec.service_account)
            validate.text("team_id", spec.team_id, 130, required=True)
        validate.text("user_id", spec.user_id, 400)
        validate.text("name", spec.name, 128)
        validate.text("project", spec.project, 128)
        if len(spec.allowed_tiers) > 16:
            raise InvalidArgument("at most 16 allowed tiers")
        for tier in spec.allowed_tiers:
            validate.name("allowed tier", tier)
        await self._priced_tiers(spec.allowed_tiers)
        if spec.ttl_s < 0:
            raise InvalidArgument(f"key ttl must be positive (or 0 = never expires), got {spec.ttl_s:g}s")
        if spec.ttl_s > MAX_KEY_TTL_S:
            # Past this an expiry no longer fits the database's 64-bit microseconds.
            raise InvalidArgument(f"key ttl must be at most {MAX_KEY_TTL_S // 86_400} days (or 0 = never "
                                  f"expires), got {spec.ttl_s:g}s")  # fmt: skip
        now = self._ledger.now()
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        new = sql_admin.NewKey(
            key_id=f"k_{uuid.uuid4().hex[:16]}", secret=secret, secret_sha256=hash_secret(secret),
            user_id=spec.user_id, team_id=spec.team_id, service_account=spec.service_account,
            allowed_tiers=spec.allowed_tiers, name=spec.name, is_admin=role == "admin", project=spec.project,
            expires_at_us=now + int(spec.ttl_s * 1e6) if spec.ttl_s else None, role=role,
        )  # fmt: skip
        return await self._store.write(lambda: audit.audited(
            actor, "keys.create", lambda c: c.key.key_id, sql_admin.create_key(new, now), now))  # fmt: skip

    async def list_keys(self, org_id: str, team_id: str, include_revoked: bool) -> list[KeyRecord]:
        return await self._store.read(lambda: sql_admin.list_keys(org_id, team_id, include_revoked))

    async def revoke_key(self, key_id: str, actor: str = "system") -> KeyRecord:
        validate.text("key_id", key_id, 64, required=True)
        now = self._ledger.now()
        key = await self._store.write(lambda: audit.audited(
            actor, "keys.revoke", lambda k: k.key_id, sql_admin.revoke_key(key_id, now), now,
            load_key_by_id(key_id)))  # fmt: skip
        self._ledger.invalidate()
        return key

    @staticmethod
    def _scope(kind: str, scope_id: str) -> None:
        if kind not in SCOPE_KINDS:
            raise InvalidArgument(f"scope kind must be one of {', '.join(SCOPE_KINDS)}")
        validate.text("scope id", scope_id, 400, required=True)

    async def set_budget(self, spec: sql_admin.BudgetSpec, actor: str = "system",
                         alert_fractions: tuple[float, ...] = ()) -> Budget:  # fmt: skip
        """``alert_fractions``: the soft alert lines; () keeps the budget's (a new one gets the default)."""
        self._scope(spec.scope_kind, spec.scope_id)
        if spec.unit not in UNITS:
            raise InvalidArgument(f"budget unit must be one of {', '.join(UNITS)}")
        if spec.period not in PERIODS:
            raise InvalidArgument(f"budget period must be one of {', '.join(PERIODS)}")
        if spec.unit == "usd" and not 0 <= spec.hard_limit <= MAX_LIMIT:
            # In dollars, as the operator typed it: the nano-USD wire unit is an internal detail.
            raise InvalidArgument(f"hard_limit must be between $0 and {format_usd(MAX_LIMIT)}, "
                                  f"got {format_usd(spec.hard_limit)}")  # fmt: skip
        validate.int_range("hard_limit", spec.hard_limit, 0, MAX_LIMIT)
        soft = spec.soft_fraction or self._s.default_soft_fraction
        if not 0 < soft <= 1:
            raise InvalidArgument(f"soft_fraction must be in (0, 1], got {soft}")
        spec = sql_admin.BudgetSpec(spec.scope_kind, spec.scope_id, spec.unit, spec.period, spec.hard_limit, soft,
                                    alerts.fractions_bp(alert_fractions) if alert_fractions else (),
                                    alerts.fractions_bp(self._s.default_alert_fractions))  # fmt: skip
        now = self._ledger.now()
        bid = sql_console.budget_id(spec)
        out: Budget = await self._store.write(lambda: audit.audited(
            actor, "budgets.set", lambda b: b.id, sql_admin.set_budget(spec, now), now,
            sql_console.budget_by_id(bid, now)))  # fmt: skip
        self._ledger.invalidate()  # escrow's cached budget lists
        return out

    async def remove_budget(self, budget_id: str, actor: str = "system") -> Budget:
        validate.text("budget_id", budget_id, 600, required=True)
        now = self._ledger.now()
        out: Budget = await self._store.write(lambda: audit.audited(
            actor, "budgets.remove", lambda b: b.id, sql_console.remove_budget(budget_id, now), now,
            removed=True))  # fmt: skip
        self._ledger.invalidate()
        return out

    async def list_budgets(self, kind: str, scope_id: str) -> list[Budget]:
        if kind:
            self._scope(kind, scope_id)
        key = f"{kind}:{scope_id}" if kind else ""
        now = self._ledger.now()
        return await self._store.read(lambda: sql_admin.list_budgets(key, now))

    async def set_price(self, tier: str, model: str, inp: int, out: int, is_reference: bool,
                        cache: tuple[int | None, int | None] = (None, None),
                        actor: str = "system") -> Price:  # fmt: skip
        """``cache``: the prompt-cache read and creation rates (None: the input price)."""
        validate.name("tier", tier)
        validate.text("model", model, 256, required=True)
        validate.int_range("input_per_million nano-USD", inp, 0, MAX_LIMIT // 10**7)
        validate.int_range("output_per_million nano-USD", out, 0, MAX_LIMIT // 10**7)
        for what, rate in zip(("cache_read", "cache_creation"), cache, strict=True):
            if rate is not None:
                validate.int_range(f"{what}_per_million nano-USD", rate, 0, MAX_LIMIT // 10**7)
        now = self._ledger.now()
        price: Price = await self._store.write(lambda: audit.audited(
            actor, "prices.set", lambda p: p.tier, sql_admin.set_price(tier, model, inp, out, is_reference, now, cache),
            now, sql_console.price_or_none(tier)))  # fmt: skip
        self._ledger.invalidate()  # escrow's cached prices
        return price

    async def _priced_tiers(self, tiers: tuple[str, ...]) -> None:
        # A tier with no price cannot be authorized, so a key limited to it
        # would be refused on every request: say so when the key is made.
        if not tiers:
            return
        priced = {p.tier for p in await self.list_prices()}
        unknown = [t for t in tiers if t not in priced]
        if unknown:
            raise InvalidArgument(f"no tier {', '.join(map(repr, unknown))} has a price; priced tiers: "
                                  f"{', '.join(sorted(priced)) or '(none)'} (add one with `rationer prices set`)")

    async def list_prices(self) -> list[Price]:
        return await self._store.read(sql_admin.list_prices)

    async def seed_prices(self) -> int:
        prices = [
            Price(p.tier, p.model, p.input_per_million_nano_usd, p.output_per_million_nano_usd, 1, 0, False)
            for p in self._s.prices
        ]
        now = self._ledger.now()
        return await self._store.write(lambda: sql_admin.seed_prices(prices, self._s.reference_tier, now))

    async def set_rate_limit(self, limit: RateLimit, actor: str = "system") -> RateLimit:
        if limit.scope_kind not in ("key", "team"):
            raise InvalidArgument("rate limits apply to a key or a team scope")
        validate.text("scope id", limit.scope_id, 400, required=True)
        validate.int_range("requests_per_minute", limit.requests_per_minute, 0, 10**9)
        validate.int_range("tokens_per_minute", limit.tokens_per_minute, 0, 10**12)
        key = f"{limit.scope_kind}:{limit.scope_id}"
        out = await self._store.write(lambda: audit.audited(
            actor, "limits.set", lambda _: key, sql_admin.set_rate_limit(limit), self._ledger.now(),
            audit.row_or_none("SELECT scope_key, requests_per_minute, tokens_per_minute FROM rate_limits"
                              " WHERE scope_key = ?", (key,), ("scope", "rpm", "tpm"))))  # fmt: skip
        self._ledger.invalidate()
        return out

    async def list_events(self, start: int | None, end: int | None, kind: str, limit: int) -> list[UsageEvent]:
        validate.text("kind", kind, 32)
        validate.int_range("limit", limit or 1000, 1, 10_000)
        return await self._store.read(lambda: sql_admin.list_events(start, end, kind, limit or 1000))

    def resolve_period(self, q: sql_admin.UsageQuery) -> sql_admin.UsageQuery:
        """``current_period`` as [start, end) of the ledger's current UTC day or month (its clock)."""
        if not q.current_period:
            return q
        if q.current_period not in ("daily", "monthly"):
            raise InvalidArgument(f"current_period must be daily or monthly, got {q.current_period!r}")
        if q.start_us is not None or q.end_us is not None:
            raise InvalidArgument("give a period start/end or current_period, not both")
        start, end = period_bounds(q.current_period, self._ledger.now())
        return sql_admin.UsageQuery(q.scope_kind, q.scope_id, start, end, q.group_by)

    async def usage(self, caller: Principal | None, q: sql_admin.UsageQuery,
                    actor: Actor | None = None) -> list[UsageRow]:  # fmt: skip
        """``actor``: the caller's role; admin and finops read all, viewer its team, member its org."""
        if q.scope_kind:
            self._scope(q.scope_kind, q.scope_id)
        if actor is not None and actor.role in roles.READ_ALL:
            caller = None
        elif actor is not None and actor.role == "viewer":
            sid = q.scope_id
            team = (await self._store.read(lambda: load_key_by_id(sid)) if q.scope_kind == "key" else None)
            roles.usage_scope(actor, q.scope_kind, q.scope_id, team.team_id if team else None)
            if not q.scope_kind:
                q = sql_admin.UsageQuery("team", actor.team_id, q.start_us, q.end_us, q.group_by, q.current_period)
        kind, scope_id = await self._ledger.visible_scope(caller, q.scope_kind, q.scope_id)
        q = sql_admin.UsageQuery(kind, scope_id, q.start_us, q.end_us, q.group_by, q.current_period)
        if len(set(q.group_by)) != len(q.group_by):
            raise InvalidArgument("group_by lists a dimension twice")
        return await self._store.read(lambda: sql_reports.usage(q))

    async def update_key(self, u: sql_console.KeyUpdate, actor: str = "system") -> KeyRecord:
        validate.text("key_id", u.key_id, 64, required=True)
        if u.role is not None:
            roles.check_role(u.role)
        if u.allowed_tiers is not None:
            for tier in u.allowed_tiers:
                validate.name("allowed tier", tier)
            await self._priced_tiers(u.allowed_tiers)
        now = self._ledger.now()
        key = await self._store.write(lambda: audit.audited(
            actor, "keys.update", lambda k: k.key_id, sql_console.update_key(u), now,
            load_key_by_id(u.key_id)))  # fmt: skip
        self._ledger.invalidate()
        return key

    async def list_audit(self, start: int | None, end: int | None, action: str, limit: int) -> list[audit.AuditEntry]:
        validate.text("action", action, 64)
        validate.int_range("limit", limit or 1000, 1, 10_000)
        return await self._store.read(lambda: audit.list_audit(start, end, action, limit or 1000))
