"""Thin gRPC adapters: proto <-> domain, delegate, no logic."""

from __future__ import annotations

from typing import Any

from grpc.aio import ServicerContext

from rationer.api.common.v1 import common_pb2
from rationer.api.ledger.v1 import ledger_pb2 as pb
from rationer.api.ledger.v1 import ledger_pb2_grpc as pb_grpc
from rationer.errors import Unauthenticated
from rationer.platform import identity
from services.ledger import convert as cv
from services.ledger import roles
from services.ledger.admin import KeySpec, LedgerAdmin
from services.ledger.budget_alerts import BudgetAlerts
from services.ledger.ledger import Ledger
from services.ledger.models import AuthorizeInput, RateLimit
from services.ledger.servicer_budgets import BudgetAlertsServicerMixin
from services.ledger.sql import admin as sql_admin
from services.ledger.sql.console import KeyUpdate

Ctx = ServicerContext[Any, Any]


def bearer(context: Ctx) -> str:
    """The caller's bearer token, or "" when it sent none (or a malformed one).

    "" rather than the parser's error: ``LedgerAdmin.caller`` answers it with
    the message that names both credentials the ledger takes.
    """
    raw = next((v for k, v in context.invocation_metadata() or ()
                if k.lower() == "authorization" and isinstance(v, str)), None)  # fmt: skip
    try:
        return identity.bearer(raw)
    except Unauthenticated:
        return ""


class LedgerServicer(pb_grpc.LedgerServiceServicer):
    def __init__(self, ledger: Ledger, admin: LedgerAdmin) -> None:
        self._ledger = ledger
        self._admin = admin

    async def Authenticate(self, request: pb.AuthenticateRequest, context: Ctx) -> pb.AuthenticateResponse:
        p = await self._ledger.authenticate(request.api_key)
        return pb.AuthenticateResponse(principal=cv.principal(p), key_expires_at=cv.ts(p.expires_at_us))

    async def GetHeadroom(self, request: pb.GetHeadroomRequest, context: Ctx) -> pb.GetHeadroomResponse:
        rows, low = await self._ledger.headroom(request.key_id, request.project)
        return pb.GetHeadroomResponse(
            budgets=[
                pb.Headroom(budget_id=h.budget_id, scope=cv.scope(h.scope_kind, h.scope_id),
                            unit=cv.UNIT_PB[h.unit], remaining_fraction=h.remaining_fraction,
                            remaining=h.remaining)
                for h in rows
            ],
            min_remaining_fraction=low,
        )

    async def Authorize(self, request: pb.AuthorizeRequest, context: Ctx) -> pb.AuthorizeResponse:
        r = await self._ledger.authorize(
            AuthorizeInput(
                key_id=request.key_id, tier=request.tier, model=request.model,
                prompt_tokens=request.estimated_prompt_tokens,
                max_completion_tokens=request.max_completion_tokens, project=request.project,
                request_id=request.request_id, ttl_s=cv.seconds_of(request.ttl),
            )
        )
        return pb.AuthorizeResponse(
            reservation_id=r.reservation_id, held=cv.money(r.held_nano_usd), expires_at=cv.ts(r.expires_at_us),
            soft_alerts=list(r.soft_alerts), min_remaining_fraction=r.min_remaining_fraction,
            replayed=r.replayed,
        )  # fmt: skip

    async def Commit(self, request: pb.CommitRequest, context: Ctx) -> pb.CommitResponse:
        res = await self._ledger.commit(cv.commit_call(request))
        return pb.CommitResponse(event=cv.event(res.event), replayed=res.replayed)

    async def Release(self, request: pb.ReleaseRequest, context: Ctx) -> pb.ReleaseResponse:
        ok = await self._ledger.release(request.reservation_id, request.key_id, request.reason)
        return pb.ReleaseResponse(released=ok)

    async def RecordCacheHit(
        self, request: pb.RecordCacheHitRequest, context: Ctx
    ) -> pb.RecordCacheHitResponse:
        ev, replayed = await self._ledger.record_cache_hit(cv.cache_hit_call(request))
        return pb.RecordCacheHitResponse(event=cv.event(ev), replayed=replayed)

    async def RecordWrongHit(
        self, request: pb.RecordWrongHitRequest, context: Ctx
    ) -> pb.RecordWrongHitResponse:
        ev, replayed = await self._ledger.record_wrong_hit(request.key_id, request.request_id)
        return pb.RecordWrongHitResponse(event=cv.event(ev), replayed=replayed)

    async def Usage(self, request: pb.UsageRequest, context: Ctx) -> pb.UsageResponse:
        actor = await self._admin.actor(bearer(context))
        caller = await self._admin.caller(bearer(context))
        has_scope = request.HasField("scope") and request.scope.kind != pb.SCOPE_KIND_UNSPECIFIED
        kind = cv.enum_in(cv.SCOPE_KIND, request.scope.kind, "scope.kind") if has_scope else ""
        q = sql_admin.UsageQuery(
            kind, request.scope.id if has_scope else "",
            cv.us_of(request.period.start, request.period.HasField("start"), "period.start"),
            cv.us_of(request.period.end, request.period.HasField("end"), "period.end"),
            tuple(cv.enum_in(cv.GROUP, g, "group_by") for g in request.group_by), request.current_period,
        )  # fmt: skip
        q = self._admin.resolve_period(q)
        rows = await self._admin.usage(caller, q, actor)
        period = common_pb2.TimeRange(start=cv.ts(q.start_us), end=cv.ts(q.end_us))
        return pb.UsageResponse(rows=[cv.usage_row(r) for r in rows], period=period)

    async def ListPrices(self, request: pb.ListPricesRequest, context: Ctx) -> pb.ListPricesResponse:
        return pb.ListPricesResponse(prices=[cv.price(p) for p in await self._admin.list_prices()])

    async def WhoAmI(self, request: pb.WhoAmIRequest, context: Ctx) -> pb.WhoAmIResponse:
        caller = await self._admin.caller(bearer(context))
        actor = await self._admin.actor(bearer(context))
        if caller is None:  # the admin token
            return pb.WhoAmIResponse(role=actor.role)
        return pb.WhoAmIResponse(role=actor.role, key_id=caller.key_id, org_id=caller.org_id,
                                 team_id=caller.team_id, user_id=caller.user_id,
                                 key_expires_at=cv.ts(caller.expires_at_us))  # fmt: skip


class LedgerAdminServicer(BudgetAlertsServicerMixin, pb_grpc.LedgerAdminServiceServicer):
    """Every call first checks the admin credential (the Budgets page's RPCs: servicer_budgets)."""

    def __init__(self, admin: LedgerAdmin, alerts: BudgetAlerts) -> None:
        self._admin = admin
        self._alerts = alerts

    def _bearer(self, context: Ctx) -> str:
        return bearer(context)

    async def CreateOrg(self, request: pb.CreateOrgRequest, context: Ctx) -> pb.Org:
        a = await self._admin.require_admin(bearer(context), "create orgs")
        o = await self._admin.create_org(request.name, request.isolate_teams, a.name)
        return pb.Org(id=o.id, name=o.name, isolate_teams=o.isolate_teams)

    async def CreateTeam(self, request: pb.CreateTeamRequest, context: Ctx) -> pb.Team:
        a = await self._admin.require_admin(bearer(context), "create teams")
        t = await self._admin.create_team(request.org_id, request.name, a.name)
        return pb.Team(id=t.id, org_id=t.org_id, name=t.name)

    async def CreateUser(self, request: pb.CreateUserRequest, context: Ctx) -> pb.User:
        a = await self._admin.require_admin(bearer(context), "create users")
        u = await self._admin.create_user(request.team_id, request.email, a.name)
        return pb.User(id=u.id, team_id=u.team_id, email=u.email)

    async def CreateKey(self, request: pb.CreateKeyRequest, context: Ctx) -> pb.CreateKeyResponse:
        a = await self._admin.require_admin(bearer(context), "create keys")
        created = await self._admin.create_key(
            KeySpec(request.user_id, request.team_id, request.service_account, tuple(request.allowed_tiers),
                    cv.seconds_of(request.ttl), request.name, request.admin, request.project, request.role),
            a.name,
        )  # fmt: skip
        return pb.CreateKeyResponse(key=cv.api_key(created.key), secret=created.secret)

    async def ListKeys(self, request: pb.ListKeysRequest, context: Ctx) -> pb.ListKeysResponse:
        await self._admin.require_admin(bearer(context), "list keys")
        keys = await self._admin.list_keys(request.org_id, request.team_id, request.include_revoked)
        return pb.ListKeysResponse(keys=[cv.api_key(k) for k in keys])

    async def RevokeKey(self, request: pb.RevokeKeyRequest, context: Ctx) -> pb.ApiKey:
        a = await self._admin.require_admin(bearer(context), "revoke keys")
        return cv.api_key(await self._admin.revoke_key(request.key_id, a.name))

    async def SetBudget(self, request: pb.SetBudgetRequest, context: Ctx) -> pb.Budget:
        a = await self._admin.require(bearer(context), roles.BUDGETS, "set budgets")
        spec = sql_admin.BudgetSpec(
            cv.enum_in(cv.SCOPE_KIND, request.scope.kind, "scope.kind"), request.scope.id,
            cv.enum_in(cv.UNIT, request.unit, "unit"), cv.enum_in(cv.PERIOD, request.period, "period"),
            request.hard_limit, request.soft_fraction,
        )  # fmt: skip
        return cv.budget(await self._admin.set_budget(spec, a.name, tuple(request.alert_fractions)))

    async def ListBudgets(self, request: pb.ListBudgetsRequest, context: Ctx) -> pb.ListBudgetsResponse:
        await self._admin.require(bearer(context), roles.BUDGETS, "list budgets")
        has = request.HasField("scope") and request.scope.kind != pb.SCOPE_KIND_UNSPECIFIED
        kind = cv.enum_in(cv.SCOPE_KIND, request.scope.kind, "scope.kind") if has else ""
        budgets = await self._admin.list_budgets(kind, request.scope.id if has else "")
        return pb.ListBudgetsResponse(budgets=[cv.budget(b) for b in budgets])

    async def SetPrice(self, request: pb.SetPriceRequest, context: Ctx) -> pb.Price:
        a = await self._admin.require_admin(bearer(context), "set prices")
        cache = tuple(getattr(request, f).nano_usd if request.HasField(f) else None
                      for f in ("cache_read_per_million", "cache_creation_per_million"))  # fmt: skip
        p = await self._admin.set_price(request.tier, request.model, request.input_per_million.nano_usd,
                                        request.output_per_million.nano_usd, request.is_reference,
                                        (cache[0], cache[1]), a.name)  # fmt: skip
        return cv.price(p)

    async def SetRateLimit(self, request: pb.SetRateLimitRequest, context: Ctx) -> pb.RateLimit:
        a = await self._admin.require_admin(bearer(context), "set rate limits")
        lim = request.limit
        kind = cv.enum_in(cv.SCOPE_KIND, lim.scope.kind, "limit.scope.kind")
        out = await self._admin.set_rate_limit(
            RateLimit(kind, lim.scope.id, lim.requests_per_minute, lim.tokens_per_minute), a.name
        )
        return pb.RateLimit(scope=cv.scope(out.scope_kind, out.scope_id),
                            requests_per_minute=out.requests_per_minute,
                            tokens_per_minute=out.tokens_per_minute)  # fmt: skip

    async def ListEvents(self, request: pb.ListEventsRequest, context: Ctx) -> pb.ListEventsResponse:
        await self._admin.require(bearer(context), roles.READ_ALL, "list usage events")
        events = await self._admin.list_events(
            cv.us_of(request.period.start, request.period.HasField("start"), "period.start"),
            cv.us_of(request.period.end, request.period.HasField("end"), "period.end"),
            request.kind, request.limit,
        )  # fmt: skip
        return pb.ListEventsResponse(events=[cv.event(e) for e in events])

    async def UpdateKey(self, request: pb.UpdateKeyRequest, context: Ctx) -> pb.ApiKey:
        a = await self._admin.require_admin(bearer(context), "update keys")
        u = KeyUpdate(request.key_id, request.role or None,
                      tuple(request.allowed_tiers) if request.set_allowed_tiers else None)  # fmt: skip
        return cv.api_key(await self._admin.update_key(u, a.name))

    async def RemoveBudget(self, request: pb.RemoveBudgetRequest, context: Ctx) -> pb.Budget:
        a = await self._admin.require(bearer(context), roles.BUDGETS, "remove budgets")
        return cv.budget(await self._admin.remove_budget(request.budget_id, a.name))

    async def ListAudit(self, request: pb.ListAuditRequest, context: Ctx) -> pb.ListAuditResponse:
        await self._admin.require_admin(bearer(context), "read the audit log")
        entries = await self._admin.list_audit(
            cv.us_of(request.period.start, request.period.HasField("start"), "period.start"),
            cv.us_of(request.period.end, request.period.HasField("end"), "period.end"),
            request.action, request.limit,
        )  # fmt: skip
        return pb.ListAuditResponse(entries=[
            pb.AuditEntry(id=e.id, time=cv.ts(e.time_us), actor=e.actor, action=e.action, target=e.target,
                          before_json=e.before_json, after_json=e.after_json) for e in entries
        ])  # fmt: skip
