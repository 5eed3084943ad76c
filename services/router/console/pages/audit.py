"""Audit: the ledger's append-only log of changes (admins), by action and period; CSV = `rationer report audit`.

ListAudit as the signed-in key: the ledger refuses anyone but an admin
(403 with its message). The CSV is the CLI's own rendering of the same
entries, so the page and `rationer report audit --format csv` agree.
"""

from __future__ import annotations

import json
import re
from datetime import UTC

from aiohttp import web

from rationer.api.ledger.v1 import ledger_pb2 as pb
from rationer.errors import InvalidArgument
from services.ledger.cli.console_ops import render_audit
from services.router.console.context import Ctx
from services.router.console.registry import Page, Route

_ACTION = re.compile(r"^[a-z_]{1,32}\.[a-z_]{1,32}$")
MAX_LIMIT = 10_000


async def _entries(ctx: Ctx) -> list[pb.AuditEntry]:
    period, q = ctx.period(), ctx.query
    action = q.get("action", "")
    if action and not _ACTION.match(action):
        raise InvalidArgument(f"action must look like keys.revoke or budgets.set, got {action[:40]!r}", param="action")
    raw = q.get("limit", "1000")
    if not raw.isdigit() or not 1 <= int(raw[:6]) <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw[:40]!r}", param="limit")
    return await ctx.admin().list_audit(action=action, limit=int(raw), start_us=period.start_us,
                                        end_us=period.end_us)  # fmt: skip


def _row(e: pb.AuditEntry) -> dict[str, object]:
    return {"id": e.id, "time": e.time.ToDatetime(tzinfo=UTC).isoformat(), "actor": e.actor, "action": e.action,
            "target": e.target, "before": json.loads(e.before_json or "null"),
            "after": json.loads(e.after_json or "null")}  # fmt: skip


async def audit(ctx: Ctx) -> dict[str, object]:
    """Oldest first, as the CLI prints them (the page sorts)."""
    return {"period": ctx.period().as_json(), "entries": [_row(e) for e in await _entries(ctx)]}


async def audit_csv(ctx: Ctx) -> web.StreamResponse:
    period = ctx.period()
    text = render_audit(await _entries(ctx), "csv") + "\n"  # the CLI prints render_audit's text and a newline
    name = f"audit-{period.first}-{period.last}.csv"
    return web.Response(text=text, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


PAGE = Page(slug="audit", title="Audit", order=60, roles=frozenset({"admin"}),
            routes=(Route("GET", "audit", audit), Route("GET", "audit.csv", audit_csv)))  # fmt: skip
