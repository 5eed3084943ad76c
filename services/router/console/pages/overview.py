"""Overview: spend, requests, tokens, savings (cache vs routing), cache hit rate, wrong hits, tier mix, per day."""

from __future__ import annotations

from datetime import timedelta

from services.ledger.models import UsageRow
from services.router.console import usage
from services.router.console.context import Ctx
from services.router.console.registry import Page, Route


async def overview(ctx: Ctx) -> dict[str, object]:
    """One Usage call grouped by day × tier; every figure on the page is a sum of its rows."""
    period = ctx.period()
    rows = await usage.rows(ctx, period, ["day", "tier"])
    by_tier: dict[str, list[UsageRow]] = {}
    by_day: dict[str, list[UsageRow]] = {}
    for r in rows:
        by_tier.setdefault(r.group.get("tier", ""), []).append(r)
        by_day.setdefault(r.group.get("day", ""), []).append(r)
    days = [(period.first + timedelta(days=i)).isoformat() for i in range(period.days)]
    tiers = [{"tier": t or "(none)", **usage.numbers(usage.total(rs))} for t, rs in sorted(by_tier.items())]
    return {
        "period": period.as_json(),
        "total": usage.numbers(usage.total(rows)),
        "tiers": tiers,
        "daily": [{"day": d, **usage.numbers(usage.total(by_day.get(d, [])))} for d in days],
    }


PAGE = Page(slug="overview", title="Overview", order=10, routes=(Route("GET", "overview", overview),))
