"""Usage rows for the pages: fetched as the signed-in key, shaped for JSON with exact money strings."""

from __future__ import annotations

from dataclasses import fields

from rationer.errors import InvalidArgument, RationerError
from services.ledger.models import UsageRow
from services.ledger.report import key_labels, label, usd
from services.router.console.context import Ctx
from services.router.console.params import Period

SCOPE_KINDS = ("org", "team", "user", "key", "project")


async def rows(ctx: Ctx, period: Period, group_by: list[str], scope: tuple[str, str] | None = None) -> list[UsageRow]:
    return await ctx.ledger.usage(scope=scope, start_us=period.start_us, end_us=period.end_us, group_by=group_by)


def scope_of(ctx: Ctx) -> tuple[str, str] | None:
    """``scope=kind:id`` (as the CLI writes scopes: team:acme/eng, key:k_...); absent: everything visible."""
    raw = ctx.query.get("scope", "")
    if not raw:
        return None
    kind, sep, sid = raw.partition(":")
    if not sep or kind not in SCOPE_KINDS or not sid or len(sid) > 400:
        raise InvalidArgument(f"scope must look like team:<team id> ({', '.join(SCOPE_KINDS)}), got {raw[:60]!r}",
                              param="scope")  # fmt: skip
    return kind, sid


async def key_names(ctx: Ctx) -> dict[str, str] | None:
    """Who holds each key (admin keys only, as in `rationer report chargeback --by key`); None otherwise."""
    try:
        return key_labels(await ctx.admin().list_keys(include_revoked=True))
    except RationerError:
        return None


def numbers(r: UsageRow) -> dict[str, object]:
    """Counts as integers, money as nano-USD integers and the CLI's exact USD text (``*_usd``)."""
    money = {"spend": r.cost, "counterfactual": r.counterfactual_cost, "savings": r.savings,
             "cache_savings": r.cache_savings, "routing_savings": r.routing_savings, "overage": r.overage}  # fmt: skip
    out: dict[str, object] = {
        "requests": r.requests, "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
        "tokens": r.prompt_tokens + r.completion_tokens, "cache_hits": r.cache_hits, "denials": r.denials,
        "soft_alerts": r.soft_alerts, "wrong_hits": r.wrong_hits,
        "cache_hit_rate": round(r.cache_hits / r.requests, 6) if r.requests else 0.0,
    }  # fmt: skip
    for name, nano in money.items():
        out[f"{name}_nano_usd"] = nano
        out[f"{name}_usd"] = usd(nano)
    return out


def total(rs: list[UsageRow], key: dict[str, str] | None = None) -> UsageRow:
    """The sum of ``rs`` (exact integers), with ``key`` as its group."""
    sums = {f.name: sum(getattr(r, f.name) for r in rs) for f in fields(UsageRow) if f.name != "group"}
    return UsageRow(dict(key or {}), **sums)


def grouped(rs: list[UsageRow], by: str, names: dict[str, str] | None = None) -> list[dict[str, object]]:
    return [{"id": r.group.get(by, ""), "label": label(r, by, names), **numbers(r)} for r in rs]
