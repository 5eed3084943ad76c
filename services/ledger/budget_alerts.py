"""Budget status (burn-down, forecast), alerts and webhooks: the Budgets page's ledger side.

Plain Python: no gRPC. Who may see what: admin and finops every budget;
a member or viewer key only the budgets on its own request path (its key,
user, team, org and project: the budgets that can refuse its requests).
Webhooks are managed by admin and finops only, and every change is audited.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
import uuid
from dataclasses import dataclass, replace
from functools import partial

from rationer.errors import InvalidArgument, NotFound
from services.ledger import roles, validate
from services.ledger.deliverer import WebhookDeliverer
from services.ledger.forecast import DAY_US, Forecast, Point, cumulative, forecast
from services.ledger.ledger import Ledger
from services.ledger.models import Budget
from services.ledger.money import period_bounds, to_datetime
from services.ledger.roles import Actor
from services.ledger.settings import LedgerSettings
from services.ledger.sql import alerts as sql_alerts
from services.ledger.sql import audit
from services.ledger.sql import burndown as sql_burn
from services.ledger.sql import webhooks as sql_hooks
from services.ledger.sql.common import BUDGET_COLS, BudgetState, Op, budget_from_row, budget_usage, load_key_by_id
from services.ledger.sql.common import path_scope_keys as _path

WEBHOOK_SECRET_PREFIX = "whsec_"
MAX_URL = 2000


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    period_start_us: int
    period_end_us: int | None
    hourly: bool  # buckets are hours (a daily budget), else days
    points: tuple[Point, ...]
    spent_rollups: int  # the period's spend in the rollups (the counter `budget.spent` is what is enforced)
    forecast: Forecast
    alerts: tuple[sql_alerts.Alert, ...]  # raised in this period, newest first


def check_url(url: str) -> str:
    validate.text("url", url, MAX_URL, required=True)
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise InvalidArgument(f"webhook url must be an absolute http:// or https:// URL, got {url!r}")
    if u.username or u.password:
        raise InvalidArgument("webhook url must not carry credentials; the body is signed with the webhook secret")
    return url


def _states(scope_keys: list[str] | None) -> Op[list[BudgetState]]:
    if scope_keys is None:
        rows = yield (f"SELECT {BUDGET_COLS} FROM budgets ORDER BY id", ())
    else:
        marks = ", ".join("?" for _ in scope_keys) or "''"
        rows = yield (f"SELECT {BUDGET_COLS} FROM budgets WHERE scope_key IN ({marks}) ORDER BY id", tuple(scope_keys))
    return [budget_from_row(r) for r in rows]


def _status(b: BudgetState, now: int, window_days: int) -> Op[BudgetStatus]:
    start, end = period_bounds(b.period, now)
    chart_start = max(start, now - now % DAY_US - (sql_burn.LIFETIME_DAYS - 1) * DAY_US) if end is None else start
    hourly = b.period == "daily"
    buckets = yield from sql_burn.series(b.scope_key, b.unit, chart_start, end or now + 1, hourly)
    offset = (yield from sql_burn.total_before(b.scope_key, b.unit, chart_start)) if end is None else 0
    points = cumulative(buckets, offset)
    unfolded, held = (yield from budget_usage([b.id], now)).get(b.id, (0, 0))  # escrow-aware, like ListBudgets
    budget = b.to_budget(now, held, unfolded)
    fc = forecast(budget.spent, b.hard_limit, points, now, start, end, window_days)
    raised = yield from sql_alerts.list_alerts([b.id], 50)
    period_start = max(start, b.period_start)
    mine = tuple(a for a in raised if a.period_start_us == period_start)
    total = points[-1].cumulative if points else offset
    return BudgetStatus(budget, start, end, hourly, tuple(points), total, fc, mine)


def statuses(visible: list[str] | None, budget_id: str, now: int, window_days: int) -> Op[list[BudgetStatus]]:
    """The Budgets page's read: every budget of these scope keys (None: all), or the one ``budget_id``."""
    out = []
    for b in (yield from _states(visible)):
        if not budget_id or b.id == budget_id:
            out.append((yield from _status(b, now, window_days)))
    return out


class BudgetAlerts:
    def __init__(self, ledger: Ledger, settings: LedgerSettings, deliverer: WebhookDeliverer) -> None:
        self._ledger = ledger
        self._store = ledger.store
        self._s = settings
        self._deliverer = deliverer

    @property
    def deliverer(self) -> WebhookDeliverer:
        return self._deliverer

    def now(self) -> int:
        return self._ledger.now()

    async def _visible(self, actor: Actor) -> list[str] | None:
        """Scope keys the actor may see budgets of; None = all."""
        if actor.role in roles.READ_ALL:
            return None
        key = await self._store.read(lambda: load_key_by_id(actor.key_id))
        if key is None:
            return []
        return _path(key.org_id, key.team_id, key.user_id, key.key_id, key.project)

    async def status(self, actor: Actor, budget_id: str = "") -> list[BudgetStatus]:
        validate.text("budget_id", budget_id, 600)
        visible = await self._visible(actor)
        now, days = self._ledger.now(), self._s.forecast_window_days
        out = await self._store.read(lambda: statuses(visible, budget_id, now, days))
        if budget_id and not out:
            raise NotFound(f"budget {budget_id!r} does not exist or is not visible to this key; "
                           "`rationer budgets list` shows the budget ids")  # fmt: skip
        return out

    async def alerts(self, actor: Actor, budget_id: str, limit: int) -> list[sql_alerts.Alert]:
        validate.text("budget_id", budget_id, 600)
        validate.int_range("limit", limit or 100, 1, 10_000)
        visible = await self._visible(actor)

        def op() -> Op[list[sql_alerts.Alert]]:
            ids = [b.id for b in (yield from _states(visible)) if not budget_id or b.id == budget_id]
            if budget_id and not ids:
                raise NotFound(f"budget {budget_id!r} does not exist or is not visible to this key")
            if not ids:
                return []
            everything = visible is None and not budget_id
            return (yield from sql_alerts.list_alerts([] if everything else ids, limit or 100))

        return await self._store.read(op)

    async def scan_forecasts(self) -> int:
        """Raise "forecast" alerts for budgets that, at the current rate, run out before their period ends."""
        now, days = self._ledger.now(), self._s.forecast_window_days
        statuses = await self._store.read(lambda: _scan_read(now, days))
        raised = 0
        for state, st in statuses:
            if not st.forecast.runs_out_before_end or st.budget.spent >= state.hard_limit:
                continue
            start = max(st.period_start_us, state.period_start)
            op = partial(_raise_forecast, state, start, st.budget.spent, now, st.forecast.runs_out_at_us)
            raised += int(await self._store.write(op))
        return raised

    async def add_webhook(self, actor: Actor, budget_id: str, org_id: str, url: str,
                          name: str = "") -> tuple[sql_hooks.Webhook, str]:  # fmt: skip
        """The webhook and its signing secret (shown once: listings never return it)."""
        if bool(budget_id) == bool(org_id):
            raise InvalidArgument("give exactly one of budget_id (that budget's alerts) or org_id (all its budgets')")
        validate.text("budget_id", budget_id, 600)
        validate.text("org_id", org_id, 64)
        validate.text("name", name, 128)
        check_url(url)
        now = self._ledger.now()
        secret = WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)
        w = sql_hooks.Webhook(f"wh_{uuid.uuid4().hex[:16]}", budget_id, org_id, url, name, now, secret)

        def op() -> Op[sql_hooks.Webhook]:
            return replace((yield from sql_hooks.add_webhook(w)), secret="")  # the audit log never sees it

        out = await self._store.write(lambda: audit.audited(actor.name, "webhooks.add", lambda h: h.id, op(), now))
        return out, secret

    async def list_webhooks(self, budget_id: str = "", org_id: str = "") -> list[sql_hooks.Webhook]:
        validate.text("budget_id", budget_id, 600)
        validate.text("org_id", org_id, 64)
        b, o = ([budget_id] if budget_id else None), ([org_id] if org_id else None)
        return await self._store.read(lambda: sql_hooks.list_webhooks(b, o))

    async def remove_webhook(self, actor: Actor, webhook_id: str) -> sql_hooks.Webhook:
        validate.text("webhook_id", webhook_id, 64, required=True)
        now = self._ledger.now()
        return await self._store.write(lambda: audit.audited(
            actor.name, "webhooks.remove", lambda h: h.id, sql_hooks.remove_webhook(webhook_id), now,
            removed=True))  # fmt: skip

    async def test_webhook(self, webhook_id: str) -> sql_hooks.Delivery:
        """Send a test alert to the webhook now (one attempt, logged like any delivery)."""
        validate.text("webhook_id", webhook_id, 64, required=True)
        w = await self._store.read(lambda: sql_hooks.get_webhook(webhook_id, with_secret=True))
        now = self._ledger.now()
        target = w.budget_id or f"org {w.org_id}"
        body = json.dumps({"text": f"Test alert from Rationer for {target}: this webhook works.",
                           "alert": {"kind": "test", "webhook_id": w.id, "budget_id": w.budget_id,
                                     "org_id": w.org_id, "time": to_datetime(now).isoformat()}},
                          sort_keys=True)  # fmt: skip
        did = f"d_test_{uuid.uuid4().hex[:16]}"
        lease = now + int(self._s.webhook_lease_s * 1e6)
        await self._store.write(lambda: sql_hooks.add_test_delivery(did, w.id, body, now, lease))
        await self._deliverer.send_now(did, w.url, w.secret, body)
        out = [d for d in await self.deliveries(w.id, 50) if d.id == did]
        return out[0]

    async def deliveries(self, webhook_id: str, limit: int) -> list[sql_hooks.Delivery]:
        validate.text("webhook_id", webhook_id, 64, required=True)
        validate.int_range("limit", limit or 100, 1, 1000)

        def op() -> Op[list[sql_hooks.Delivery]]:
            yield from sql_hooks.get_webhook(webhook_id)
            return (yield from sql_hooks.list_deliveries(webhook_id, limit or 100))

        return await self._store.read(op)


def _scan_read(now: int, days: int) -> Op[list[tuple[BudgetState, BudgetStatus]]]:
    out = []
    for b in (yield from _states(None)):
        if b.period != "lifetime" and b.hard_limit > 0:
            out.append((b, (yield from _status(b, now, days))))
    return out


def _raise_forecast(b: BudgetState, start: int, spent: int, now: int, at: int | None) -> Op[bool]:
    org = yield from sql_alerts.scope_org(b.scope_key)
    return (yield from sql_alerts.raise_alert(b, start, "forecast", 0, spent, org, now, at)) is not None

