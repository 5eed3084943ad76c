"""Async client of LedgerAdminService (CLI, bootstrap, tests). Returns proto messages."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from rationer.api.common.v1 import common_pb2
from rationer.api.ledger.v1 import ledger_pb2 as pb
from rationer.api.ledger.v1 import ledger_pb2_grpc as pb_grpc
from services.ledger import convert as cv
from services.ledger.client import call


class LedgerAdminClient:
    def __init__(self, target: str | grpc.aio.Channel, admin_token: str, *, timeout_s: float = 10.0) -> None:
        self._own = isinstance(target, str)
        self._channel = grpc.aio.insecure_channel(target) if isinstance(target, str) else target
        self._stub = pb_grpc.LedgerAdminServiceStub(self._channel)
        self._md = (("authorization", f"Bearer {admin_token}"),)
        self._timeout = timeout_s

    async def close(self) -> None:
        if self._own:
            await self._channel.close(None)

    async def __aenter__(self) -> LedgerAdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def create_org(self, name: str, isolate_teams: bool = False) -> pb.Org:
        req = pb.CreateOrgRequest(name=name, isolate_teams=isolate_teams)
        return await call(self._stub.CreateOrg, req, self._timeout, self._md)

    async def create_team(self, org_id: str, name: str) -> pb.Team:
        req = pb.CreateTeamRequest(org_id=org_id, name=name)
        return await call(self._stub.CreateTeam, req, self._timeout, self._md)

    async def create_user(self, team_id: str, email: str) -> pb.User:
        req = pb.CreateUserRequest(team_id=team_id, email=email)
        return await call(self._stub.CreateUser, req, self._timeout, self._md)

    async def create_key(self, *, user_id: str = "", team_id: str = "", service_account: str = "",
                         allowed_tiers: Sequence[str] = (), ttl_s: float = 0.0, name: str = "",
                         admin: bool = False, project: str = "", role: str = "") -> pb.CreateKeyResponse:  # fmt: skip
        req = pb.CreateKeyRequest(
            user_id=user_id, team_id=team_id, service_account=service_account,
            allowed_tiers=list(allowed_tiers), ttl=cv.duration(ttl_s) if ttl_s else None, name=name,
            admin=admin, project=project, role=role,
        )  # fmt: skip
        return await call(self._stub.CreateKey, req, self._timeout, self._md)

    async def list_keys(self, org_id: str = "", team_id: str = "", include_revoked: bool = False) -> list[pb.ApiKey]:
        req = pb.ListKeysRequest(org_id=org_id, team_id=team_id, include_revoked=include_revoked)
        return list((await call(self._stub.ListKeys, req, self._timeout, self._md)).keys)

    async def revoke_key(self, key_id: str) -> pb.ApiKey:
        return await call(self._stub.RevokeKey, pb.RevokeKeyRequest(key_id=key_id), self._timeout, self._md)

    async def set_budget(self, kind: str, scope_id: str, *, unit: str, period: str, hard_limit: int,
                         soft_fraction: float = 0.0, alert_fractions: Sequence[float] = ()) -> pb.Budget:  # fmt: skip
        req = pb.SetBudgetRequest(
            scope=cv.scope(kind, scope_id), unit=cv.UNIT_PB[unit], period=cv.PERIOD_PB[period],
            hard_limit=hard_limit, soft_fraction=soft_fraction, alert_fractions=list(alert_fractions),
        )  # fmt: skip
        return await call(self._stub.SetBudget, req, self._timeout, self._md)

    async def list_budgets(self, kind: str = "", scope_id: str = "") -> list[pb.Budget]:
        req = pb.ListBudgetsRequest(scope=cv.scope(kind, scope_id) if kind else None)
        return list((await call(self._stub.ListBudgets, req, self._timeout, self._md)).budgets)

    async def set_price(self, tier: str, model: str, input_per_million: int, output_per_million: int,
                        is_reference: bool = False, *, cache_read_per_million: int | None = None,
                        cache_creation_per_million: int | None = None) -> pb.Price:  # fmt: skip
        """The cache rates price prompt-cache reads and writes; None: the input price."""
        req = pb.SetPriceRequest(
            tier=tier, model=model, input_per_million=cv.money(input_per_million),
            output_per_million=cv.money(output_per_million), is_reference=is_reference,
            cache_read_per_million=None if cache_read_per_million is None else cv.money(cache_read_per_million),
            cache_creation_per_million=(None if cache_creation_per_million is None
                                        else cv.money(cache_creation_per_million)),
        )  # fmt: skip
        return await call(self._stub.SetPrice, req, self._timeout, self._md)

    async def set_rate_limit(self, kind: str, scope_id: str, *, rpm: int = 0, tpm: int = 0) -> pb.RateLimit:
        limit = pb.RateLimit(scope=cv.scope(kind, scope_id), requests_per_minute=rpm, tokens_per_minute=tpm)
        req = pb.SetRateLimitRequest(limit=limit)
        return await call(self._stub.SetRateLimit, req, self._timeout, self._md)

    async def list_events(self, *, kind: str = "", limit: int = 10_000, start_us: int | None = None,
                          end_us: int | None = None) -> list[pb.UsageEvent]:  # fmt: skip
        req = pb.ListEventsRequest(
            period=common_pb2.TimeRange(start=cv.ts(start_us), end=cv.ts(end_us)), kind=kind, limit=limit
        )
        return list((await call(self._stub.ListEvents, req, self._timeout, self._md)).events)

    async def update_key(self, key_id: str, *, role: str = "",
                         allowed_tiers: Sequence[str] | None = None) -> pb.ApiKey:  # fmt: skip
        """``allowed_tiers``: None = unchanged, [] = every tier."""
        req = pb.UpdateKeyRequest(key_id=key_id, role=role, set_allowed_tiers=allowed_tiers is not None,
                                  allowed_tiers=list(allowed_tiers or ()))  # fmt: skip
        return await call(self._stub.UpdateKey, req, self._timeout, self._md)

    async def remove_budget(self, budget_id: str) -> pb.Budget:
        req = pb.RemoveBudgetRequest(budget_id=budget_id)
        return await call(self._stub.RemoveBudget, req, self._timeout, self._md)

    async def list_audit(self, *, action: str = "", limit: int = 1000, start_us: int | None = None,
                         end_us: int | None = None) -> list[pb.AuditEntry]:  # fmt: skip
        req = pb.ListAuditRequest(
            period=common_pb2.TimeRange(start=cv.ts(start_us), end=cv.ts(end_us)), action=action, limit=limit
        )
        return list((await call(self._stub.ListAudit, req, self._timeout, self._md)).entries)

    # The Budgets page (issue 15): status, alerts, webhooks.
    async def budget_status(self, budget_id: str = "") -> pb.BudgetStatusResponse:
        req = pb.BudgetStatusRequest(budget_id=budget_id)
        return await call(self._stub.BudgetStatus, req, self._timeout, self._md)

    async def list_budget_alerts(self, budget_id: str = "", limit: int = 0) -> list[pb.BudgetAlert]:
        req = pb.ListBudgetAlertsRequest(budget_id=budget_id, limit=limit)
        return list((await call(self._stub.ListBudgetAlerts, req, self._timeout, self._md)).alerts)

    async def add_webhook(self, url: str, *, budget_id: str = "", org_id: str = "",
                          name: str = "") -> pb.AddWebhookResponse:  # fmt: skip
        req = pb.AddWebhookRequest(budget_id=budget_id, org_id=org_id, url=url, name=name)
        return await call(self._stub.AddWebhook, req, self._timeout, self._md)

    async def list_webhooks(self, *, budget_id: str = "", org_id: str = "") -> list[pb.Webhook]:
        req = pb.ListWebhooksRequest(budget_id=budget_id, org_id=org_id)
        return list((await call(self._stub.ListWebhooks, req, self._timeout, self._md)).webhooks)

    async def remove_webhook(self, webhook_id: str) -> pb.Webhook:
        req = pb.RemoveWebhookRequest(webhook_id=webhook_id)
        return await call(self._stub.RemoveWebhook, req, self._timeout, self._md)

    async def test_webhook(self, webhook_id: str) -> pb.WebhookDelivery:
        req = pb.TestWebhookRequest(webhook_id=webhook_id)
        return await call(self._stub.TestWebhook, req, self._timeout, self._md)

    async def list_webhook_deliveries(self, webhook_id: str, limit: int = 0) -> list[pb.WebhookDelivery]:
        req = pb.ListWebhookDeliveriesRequest(webhook_id=webhook_id, limit=limit)
        return list((await call(self._stub.ListWebhookDeliveries, req, self._timeout, self._md)).deliveries)
