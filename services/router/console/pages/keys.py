"""Keys: list (a key owner sees its own), create with the secret shown once, revoke, allowed tiers, expiry.

Every change is a ledger admin RPC made as the signed-in key, so the ledger
decides (only admin keys may change keys) and writes the audit row; this
module only shapes input and output. The secret of a new key is in the
create response alone (marked no-store) and nowhere else, ever.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from rationer.api.ledger.v1 import ledger_pb2 as pb
from rationer.errors import InvalidArgument
from services.ledger.admin_client import UNCHANGED, Unchanged
from services.ledger.money import from_datetime
from services.router.console.context import Ctx
from services.router.console.params import ident
from services.router.console.registry import Page, Route

ROLES = ("member", "viewer", "finops", "admin")
MAX_TTL_DAYS = 36_500


def _iso(ts: Any, present: bool) -> str:
    return ts.ToDatetime(tzinfo=UTC).isoformat() if present else ""


def key_row(k: pb.ApiKey) -> dict[str, object]:
    """A key as the page shows it; ApiKey has the secret's prefix only, never the secret."""
    revoked = k.HasField("revoked_at")
    return {
        "key_id": k.key_id, "prefix": k.prefix, "name": k.name, "role": k.role or "member",
        "owner": k.user_id or f"{k.team_id} (service account {k.service_account})",
        "user_id": k.user_id, "team_id": k.team_id, "project": k.project,
        "allowed_tiers": list(k.allowed_tiers), "created_at": _iso(k.created_at, k.HasField("created_at")),
        "expires_at": _iso(k.expires_at, k.HasField("expires_at")),
        "revoked_at": _iso(k.revoked_at, revoked), "state": "revoked" if revoked else "active",
    }  # fmt: skip


async def list_keys(ctx: Ctx) -> dict[str, object]:
    """Admin and finops: every key; anyone else: its own user's keys (the ledger narrows it)."""
    revoked = ctx.query.get("revoked", "") in ("1", "true", "on")
    keys = await ctx.admin().list_keys(org_id=ident(ctx.query, "org"), team_id=ident(ctx.query, "team"),
                                       include_revoked=revoked)  # fmt: skip
    tiers = sorted(p.tier for p in await ctx.ledger.list_prices())
    return {"keys": [key_row(k) for k in keys], "can_manage": ctx.session.role == "admin", "tiers": tiers,
            "roles": list(ROLES)}  # fmt: skip


def _text(body: dict[str, Any], name: str, limit: int = 400) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidArgument(f"{name} must be a string of at most {limit} characters", param=name)
    return value.strip()


def _tiers(body: dict[str, Any]) -> list[str]:
    tiers = body.get("allowed_tiers", [])
    if not isinstance(tiers, list) or not all(isinstance(t, str) for t in tiers) or len(tiers) > 16:
        raise InvalidArgument("allowed_tiers must be a list of at most 16 tier names ([] = every tier)",
                              param="allowed_tiers")  # fmt: skip
    return tiers


def _expiry(body: dict[str, Any]) -> int | Unchanged | None:
    """``expires``: absent = unchanged, "" or null = never, "YYYY-MM-DD" = that UTC day's start."""
    if "expires" not in body:
        return UNCHANGED
    raw = body["expires"]
    if raw in ("", None):
        return None
    try:
        if not isinstance(raw, str) or len(raw) > 32:
            raise ValueError
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidArgument(f"expires must be a date like 2031-04-01 (UTC) or empty for never, got {str(raw)[:40]!r}",
                              param="expires") from None  # fmt: skip
    return from_datetime(when if when.tzinfo else when.replace(tzinfo=UTC))


async def create_key(ctx: Ctx) -> web.StreamResponse:
    body = await ctx.json()
    role = _text(body, "role", 16) or "member"
    if role not in ROLES:
        raise InvalidArgument(f"role must be one of {', '.join(ROLES)}", param="role")
    ttl_days = body.get("ttl_days", 0)
    if not isinstance(ttl_days, int) or isinstance(ttl_days, bool) or not 0 <= ttl_days <= MAX_TTL_DAYS:
        raise InvalidArgument(f"ttl_days must be a whole number of days, 0 (never expires) to {MAX_TTL_DAYS}",
                              param="ttl_days")  # fmt: skip
    created = await ctx.admin().create_key(
        user_id=_text(body, "user_id"), team_id=_text(body, "team_id"),
        service_account=_text(body, "service_account", 64), allowed_tiers=_tiers(body), ttl_s=ttl_days * 86_400.0,
        name=_text(body, "name", 128), project=_text(body, "project", 128), role=role,
    )  # fmt: skip
    # The one place the secret is ever shown: never cached, never logged.
    return web.json_response({"key": key_row(created.key), "secret": created.secret},
                             headers={"Cache-Control": "no-store"})  # fmt: skip


def _key_id(ctx: Ctx) -> str:
    key_id = ctx.request.match_info["key_id"]
    ident({"key_id": key_id}, "key_id")
    return key_id


async def revoke_key(ctx: Ctx) -> dict[str, object]:
    return {"key": key_row(await ctx.admin().revoke_key(_key_id(ctx)))}


async def update_key(ctx: Ctx) -> dict[str, object]:
    """``allowed_tiers`` (list, [] = every tier) and/or ``expires``; what the body leaves out is unchanged."""
    key_id, body = _key_id(ctx), await ctx.json()
    unknown = set(body) - {"allowed_tiers", "expires"}
    if unknown:
        raise InvalidArgument(f"a key update takes allowed_tiers and expires only, not {', '.join(sorted(unknown))}",
                              param=sorted(unknown)[0])  # fmt: skip
    tiers = _tiers(body) if "allowed_tiers" in body else None
    key = await ctx.admin().update_key(key_id, allowed_tiers=tiers, expires_at_us=_expiry(body))
    return {"key": key_row(key)}


PAGE = Page(
    slug="keys", title="Keys", order=40,
    routes=(Route("GET", "keys", list_keys), Route("POST", "keys", create_key),
            Route("POST", "keys/{key_id}/revoke", revoke_key), Route("PATCH", "keys/{key_id}", update_key)),
)  # fmt: skip
