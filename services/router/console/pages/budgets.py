"""Budgets: burn-down against the period, soft/alert/hard lines, run-out forecast, alerts, webhooks.

Every read and change is a ledger RPC as the signed-in key (``ctx.admin()``),
so the ledger decides what the key may see (BudgetStatus: admin/finops all,
others their own path) and may change (admin/finops), and audits changes.
Budget ids hold ``/`` and ``:``, so they travel in the query or the body.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from rationer.errors import InvalidArgument, NotFound
from services.ledger.report import usd
from services.router.console import budgets_view as view
from services.router.console.context import Ctx
from services.router.console.registry import Page, Route

EDITORS = frozenset({"admin", "finops"})


def _text(body: dict[str, Any], name: str, limit: int = 2000, required: bool = True) -> str:
    value = body.get(name, "")
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be a string", param=name)
    text = str(value).strip()
    if required and not text:
        raise InvalidArgument(f"{name} is required", param=name)
    if len(text) > limit:
        raise InvalidArgument(f"{name} is longer than {limit} characters", param=name)
    return text


async def budgets(ctx: Ctx) -> dict[str, object]:
    """Every budget the key may see, with its webhooks when the key may manage them."""
    admin = ctx.admin()
    status = await admin.budget_status()
    editor = ctx.session.role in EDITORS
    hooks = await admin.list_webhooks() if editor else []
    out = []
    for s in status.budgets:
        j = view.status_json(s)
        b = s.budget
        j["text"] = {"spent": _amount(j["unit"], b.spent), "hard_limit": _amount(j["unit"], b.hard_limit),
                     "rate_per_day": _amount(j["unit"], int(s.rate_per_day))}  # fmt: skip
        j["webhooks"] = [_hook(w) for w in hooks if w.budget_id == b.id]
        out.append(j)
    return {"now": status.now.ToDatetime().isoformat() + "+00:00", "can_edit": editor, "budgets": out,
            "org_webhooks": [_hook(w) for w in hooks if w.org_id]}  # fmt: skip


def _amount(unit: str, n: int) -> str:
    return f"${usd(n)}" if unit == "usd" else f"{n:,} tokens"


def _hook(w: Any) -> dict[str, str]:
    return {"id": w.id, "budget_id": w.budget_id, "org_id": w.org_id, "url": w.url, "name": w.name}


async def burndown_svg(ctx: Ctx) -> web.StreamResponse:
    """The chart as an SVG image (an <img>: nothing in it can run), escaped where it names things."""
    bid = _text(ctx.query, "id", 600)
    status = await ctx.admin().budget_status(bid)
    if not status.budgets:
        raise NotFound(f"budget {bid!r} does not exist")
    svg = view.burndown_svg(status.budgets[0], status.now)
    return web.Response(text=svg, content_type="image/svg+xml", headers={"Cache-Control": "no-store"})


async def set_budget(ctx: Ctx) -> dict[str, object]:
    body = await ctx.json()
    form = view.parse_budget_form({k: str(v) for k, v in body.items() if isinstance(v, str | int | float)})
    b = await ctx.admin().set_budget(form.scope_kind, form.scope_id, unit=form.unit, period=form.period,
                                     hard_limit=form.hard_limit, soft_fraction=form.soft_fraction,
                                     alert_fractions=form.alert_fractions)  # fmt: skip
    return {"id": b.id, "hard_limit": b.hard_limit, "alert_fractions": list(b.alert_fractions)}


async def remove_budget(ctx: Ctx) -> dict[str, object]:
    b = await ctx.admin().remove_budget(_text(await ctx.json(), "id", 600))
    return {"removed": b.id}


async def add_webhook(ctx: Ctx) -> dict[str, object]:
    body = await ctx.json()
    r = await ctx.admin().add_webhook(_text(body, "url"), budget_id=_text(body, "budget_id", 600, False),
                                      org_id=_text(body, "org_id", 64, False), name=_text(body, "name", 128, False))
    # The secret is shown once, here, to the admin who made it.
    return {"webhook": _hook(r.webhook), "secret": r.secret}


async def remove_webhook(ctx: Ctx) -> dict[str, object]:
    w = await ctx.admin().remove_webhook(_text(await ctx.json(), "webhook_id", 64))
    return {"removed": w.id}


def _delivery(d: Any) -> dict[str, object]:
    return {"id": d.id, "alert_id": d.alert_id, "state": d.state, "attempts": d.attempts,
            "created_at": d.created_at.ToDatetime().isoformat() + "+00:00",
            "log": [{"attempt": a.attempt, "time": a.time.ToDatetime().isoformat() + "+00:00",
                     "status_code": a.status_code, "error": a.error} for a in d.log]}  # fmt: skip


async def test_webhook(ctx: Ctx) -> dict[str, object]:
    return _delivery(await ctx.admin().test_webhook(_text(await ctx.json(), "webhook_id", 64)))


async def deliveries(ctx: Ctx) -> dict[str, object]:
    rows = await ctx.admin().list_webhook_deliveries(_text(ctx.query, "webhook_id", 64), 50)
    return {"deliveries": [_delivery(d) for d in rows]}


PAGE = Page(
    slug="budgets", title="Budgets", order=30,
    routes=(Route("GET", "budgets", budgets), Route("GET", "budgets/burndown.svg", burndown_svg),
            Route("POST", "budgets", set_budget), Route("POST", "budgets/remove", remove_budget),
            Route("POST", "webhooks", add_webhook), Route("POST", "webhooks/remove", remove_webhook),
            Route("POST", "webhooks/test", test_webhook), Route("GET", "webhooks/deliveries", deliveries)),
)  # fmt: skip
