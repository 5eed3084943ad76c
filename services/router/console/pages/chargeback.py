"""Chargeback: spend by org → team → user → key, by project and by model; drill-down; CSV as the CLI writes it."""

from __future__ import annotations

from aiohttp import web

from services.ledger.models import UsageRow
from services.ledger.report import period_label, render
from services.router.console import usage
from services.router.console.context import Ctx
from services.router.console.params import Period, choice
from services.router.console.registry import Page, Route

BY = ("org", "team", "user", "key", "project", "model", "tier", "day")
# Clicking a row of one level shows the next, scoped to that row.
DRILL = {"org": "team", "team": "user", "user": "key"}


async def _fetch(ctx: Ctx) -> tuple[str, list[UsageRow], dict[str, str] | None, Period]:
    period, by, scope = ctx.period(), choice(ctx.query, "by", BY, "team"), usage.scope_of(ctx)
    rows = await usage.rows(ctx, period, [by], scope)
    names = await usage.key_names(ctx) if by == "key" else None
    return by, rows, names, period


async def chargeback(ctx: Ctx) -> dict[str, object]:
    by, rows, names, period = await _fetch(ctx)
    scope = usage.scope_of(ctx)
    return {
        "period": period.as_json(),
        "by": by, "scope": f"{scope[0]}:{scope[1]}" if scope else "", "drill": DRILL.get(by, ""),
        "rows": usage.grouped(rows, by, names),
        "total": usage.numbers(usage.total(rows)),
    }  # fmt: skip


async def chargeback_csv(ctx: Ctx) -> web.StreamResponse:
    """Byte for byte what `rationer report chargeback --format csv --by <by>` prints for the same range."""
    by, rows, names, period = await _fetch(ctx)
    # The CLI prints render()'s text and a newline.
    text = render(rows, by, "csv", period_label(period.start_us, period.end_us), names) + "\n"
    name = f"chargeback-{period.first}-{period.last}-by-{by}.csv"
    return web.Response(text=text, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


PAGE = Page(
    slug="chargeback", title="Chargeback", order=20, shot_params={"by": "team"},
    routes=(Route("GET", "chargeback", chargeback), Route("GET", "chargeback.csv", chargeback_csv)),
)  # fmt: skip
