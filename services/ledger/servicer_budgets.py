"""Thin gRPC adapters of the Budgets page's RPCs (budget status, alerts, webhooks): proto <-> domain."""

from __future__ import annotations

from typing import Any

from grpc.aio import ServicerContext

from rationer.api.ledger.v1 import ledger_pb2 as pb
from services.ledger import convert as cv
from services.ledger import roles
from services.ledger.admin import LedgerAdmin
from services.ledger.budget_alerts import BudgetAlerts, BudgetStatus
from services.ledger.sql import alerts as sql_alerts
from services.ledger.sql import webhooks as sql_hooks

Ctx = ServicerContext[Any, Any]


def alert(a: sql_alerts.Alert) -> pb.BudgetAlert:
    return pb.BudgetAlert(id=a.id, budget_id=a.budget_id, period_start=cv.ts(a.period_start_us), kind=a.kind,
                          fraction=a.fraction_bp / sql_alerts.BP, time=cv.ts(a.time_us), spent=a.spent,
                          hard_limit=a.hard_limit, text=a.text)  # fmt: skip


def status(s: BudgetStatus) -> pb.BudgetStatusEntry:
    return pb.BudgetStatusEntry(
        budget=cv.budget(s.budget), period_start=cv.ts(s.period_start_us), hourly=s.hourly,
        points=[pb.BurnPoint(start=cv.ts(p.start_us), amount=p.amount, cumulative=p.cumulative) for p in s.points],
        spent_rollups=s.spent_rollups, rate_per_day=s.forecast.rate_per_day,
        rate_since=cv.ts(s.forecast.window_start_us), runs_out_at=cv.ts(s.forecast.runs_out_at_us),
        runs_out_before_period_end=s.forecast.runs_out_before_end, alerts=[alert(a) for a in s.alerts],
    )  # fmt: skip


def webhook(w: sql_hooks.Webhook) -> pb.Webhook:
    return pb.Webhook(id=w.id, budget_id=w.budget_id, org_id=w.org_id, url=w.url, name=w.name,
                      created_at=cv.ts(w.created_at_us))  # fmt: skip


def delivery(d: sql_hooks.Delivery) -> pb.WebhookDelivery:
    return pb.WebhookDelivery(
        id=d.id, webhook_id=d.webhook_id, alert_id=d.alert_id, state=d.state, attempts=d.attempts,
        next_attempt_at=cv.ts(d.next_attempt_at_us), created_at=cv.ts(d.created_at_us), body=d.body,
        log=[pb.WebhookAttempt(attempt=a.attempt, time=cv.ts(a.time_us), status_code=a.status_code, error=a.error)
             for a in d.log],
    )  # fmt: skip


class BudgetAlertsServicerMixin:
    """Mixed into LedgerAdminServicer; ``bearer`` is the servicer module's credential reader."""

    _admin: LedgerAdmin
    _alerts: BudgetAlerts

    def _bearer(self, context: Ctx) -> str:
        raise NotImplementedError  # LedgerAdminServicer's: the one reader of the credential

    async def BudgetStatus(self, request: pb.BudgetStatusRequest, context: Ctx) -> pb.BudgetStatusResponse:
        actor = await self._admin.actor(self._bearer(context))
        rows = await self._alerts.status(actor, request.budget_id)
        return pb.BudgetStatusResponse(budgets=[status(s) for s in rows], now=cv.ts(self._alerts.now()))

    async def ListBudgetAlerts(self, request: pb.ListBudgetAlertsRequest, context: Ctx) -> pb.ListBudgetAlertsResponse:
        actor = await self._admin.actor(self._bearer(context))
        rows = await self._alerts.alerts(actor, request.budget_id, request.limit)
        return pb.ListBudgetAlertsResponse(alerts=[alert(a) for a in rows])

    async def AddWebhook(self, request: pb.AddWebhookRequest, context: Ctx) -> pb.AddWebhookResponse:
        actor = await self._admin.require(self._bearer(context), roles.BUDGETS, "add webhooks")
        w, secret = await self._alerts.add_webhook(actor, request.budget_id, request.org_id, request.url, request.name)
        return pb.AddWebhookResponse(webhook=webhook(w), secret=secret)

    async def ListWebhooks(self, request: pb.ListWebhooksRequest, context: Ctx) -> pb.ListWebhooksResponse:
        await self._admin.require(self._bearer(context), roles.BUDGETS, "list webhooks")
        rows = await self._alerts.list_webhooks(request.budget_id, request.org_id)
        return pb.ListWebhooksResponse(webhooks=[webhook(w) for w in rows])

    async def RemoveWebhook(self, request: pb.RemoveWebhookRequest, context: Ctx) -> pb.Webhook:
        actor = await self._admin.require(self._bearer(context), roles.BUDGETS, "remove webhooks")
        return webhook(await self._alerts.remove_webhook(actor, request.webhook_id))

    async def TestWebhook(self, request: pb.TestWebhookRequest, context: Ctx) -> pb.WebhookDelivery:
        await self._admin.require(self._bearer(context), roles.BUDGETS, "test webhooks")
        return delivery(await self._alerts.test_webhook(request.webhook_id))

    async def ListWebhookDeliveries(self, request: pb.ListWebhookDeliveriesRequest,
                                    context: Ctx) -> pb.ListWebhookDeliveriesResponse:  # fmt: skip
        await self._admin.require(self._bearer(context), roles.BUDGETS, "read webhook deliveries")
        rows = await self._alerts.deliveries(request.webhook_id, request.limit)
        return pb.ListWebhookDeliveriesResponse(deliveries=[delivery(d) for d in rows])
