"""Requests: the searchable log of recent calls, newest first, paged by the ledger's cursor.

One ListRequests call as the signed-in key: the ledger narrows it to the
key's scope (viewer its team, member its org, admin and finops all) and
refuses a team or org filter outside it. No prompt text unless the call's
org turned prompt logging on (`rationer orgs prompt-logging ORG --on`).
"""

from __future__ import annotations

from datetime import UTC

from rationer.errors import InvalidArgument
from services.ledger.report import usd
from services.router.console.context import Ctx
from services.router.console.params import choice, ident
from services.router.console.registry import Page, Route

STATUSES = ("", "200", "429", "499")
MAX_PAGE = 500


def _int(query: dict[str, str], name: str, default: int) -> int:
    raw = query.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or len(raw) > 6:
        raise InvalidArgument(f"{name} must be a whole number, got {raw[:40]!r}", param=name)
    return int(raw)


def _row(r: object) -> dict[str, object]:
    e = r.event  # type: ignore[attr-defined]
    savings = max(e.counterfactual_cost.nano_usd - e.cost.nano_usd, 0)
    return {
        "event_id": e.event_id, "time": e.time.ToDatetime(tzinfo=UTC).isoformat(), "kind": e.kind,
        "request_id": e.request_id, "key_id": e.key_id, "team_id": e.team_id, "org_id": e.org_id,
        "user_id": e.user_id, "project": e.project, "tier": e.tier, "model": e.model,
        "prompt_tokens": e.prompt_tokens, "completion_tokens": e.completion_tokens,
        "tokens": e.prompt_tokens + e.completion_tokens,
        "cost_nano_usd": e.cost.nano_usd, "cost_usd": usd(e.cost.nano_usd),
        "savings_nano_usd": savings, "savings_usd": usd(savings),
        "cache": "hit" if e.cache_hit else "miss", "latency_ms": e.latency_ms, "status": e.status,
        "detail": e.detail, "prompt": r.prompt_text, "prompt_truncated": r.prompt_truncated,  # type: ignore[attr-defined]
    }  # fmt: skip


async def list_requests(ctx: Ctx) -> dict[str, object]:
    q, period = ctx.query, ctx.period()
    cursor = q.get("cursor", "")
    if len(cursor) > 200:
        raise InvalidArgument("cursor is too long; pass the next_cursor of the previous page", param="cursor")
    page_size = _int(q, "page_size", 50)
    if not 1 <= page_size <= MAX_PAGE:
        raise InvalidArgument(f"page_size must be between 1 and {MAX_PAGE}, got {page_size}", param="page_size")
    status = choice(q, "status", STATUSES, "")
    resp = await ctx.admin().list_requests(
        start_us=period.start_us, end_us=period.end_us, cursor=cursor, page_size=page_size,
        key_id=ident(q, "key"), team_id=ident(q, "team"), org_id=ident(q, "org"), tier=ident(q, "tier"),
        model=q.get("model", "")[:257], status=int(status or 0), cache=choice(q, "cache", ("", "hit", "miss"), ""),
    )  # fmt: skip
    return {"period": period.as_json(), "requests": [_row(r) for r in resp.requests],
            "next_cursor": resp.next_cursor, "page_size": page_size}  # fmt: skip


PAGE = Page(slug="requests", title="Requests", order=50, routes=(Route("GET", "requests", list_requests),),
            shot_params={"page_size": "20"})
