"""The console's reads and settings over the ledger: own keys, the Requests log, org settings.

Plain Python (no gRPC). Each method takes the caller's :class:`Actor` and
narrows what it reads to the caller's scope here, in one place, so no page
or RPC can forget to: admin and finops see every org, member its org,
viewer its team, and a key owner's key list is its own user's keys.
"""

from __future__ import annotations

from dataclasses import replace

from rationer.errors import InvalidArgument, NotFound, PermissionDenied
from services.ledger import roles, validate
from services.ledger.ledger import Ledger
from services.ledger.models import KeyRecord, Org
from services.ledger.roles import Actor
from services.ledger.sql import admin as sql_admin
from services.ledger.sql import audit
from services.ledger.sql import console as sql_console
from services.ledger.sql import requests as sql_requests
from services.ledger.sql.common import Op, load_key_by_id
from services.ledger.sql.requests import RequestRecord, RequestsQuery, Scope

MAX_PAGE = 500
DEFAULT_PAGE = 50


def requests_scope(actor: Actor) -> Scope:
    """The rows a role may read: admin and finops all, member its org, viewer its team."""
    if actor.role in roles.READ_ALL:
        return Scope()
    if actor.role == "viewer":
        return Scope("team_id", actor.team_id)
    return Scope("org_id", actor.org_id)


def _check_filters(actor: Actor, q: RequestsQuery) -> None:
    """An org or team filter outside the caller's scope is refused, not silently emptied."""
    scope = requests_scope(actor)
    if scope.column == "team_id":
        outside = (q.team_id and q.team_id != actor.team_id) or (q.org_id and q.org_id != actor.org_id)
        mine = f"team {actor.team_id!r}"
    elif scope.column == "org_id":
        team_org = q.team_id.split("/", 1)[0] if q.team_id else actor.org_id
        outside = (q.org_id and q.org_id != actor.org_id) or team_org != actor.org_id
        mine = f"org {actor.org_id!r}"
    else:
        return
    if outside:
        raise PermissionDenied(
            f"API key {actor.key_id} has role {actor.role!r} and may read requests of its own {mine} only; "
            "leave the org/team filter out, or use a finops or admin key",
            reason="role",
        )


def validate_query(q: RequestsQuery) -> RequestsQuery:
    for what, value, size in (("org_id", q.org_id, 64), ("team_id", q.team_id, 130), ("key_id", q.key_id, 64),
                              ("tier", q.tier, 64), ("model", q.model, 256)):  # fmt: skip
        validate.text(what, value, size)
    if q.cache not in ("", "hit", "miss"):
        raise InvalidArgument(f"cache must be hit, miss or empty (any), got {q.cache[:40]!r}")
    if q.status and not 100 <= q.status <= 599:
        raise InvalidArgument(f"status must be an HTTP status (100..599) or 0 (any), got {q.status}")
    if not 0 <= q.page_size <= MAX_PAGE:
        raise InvalidArgument(f"page_size must be between 1 and {MAX_PAGE} (0 = {DEFAULT_PAGE}), got {q.page_size}")
    if q.start_us is not None and q.end_us is not None and q.start_us >= q.end_us:
        raise InvalidArgument("period.start must be before period.end")
    return replace(q, page_size=q.page_size or DEFAULT_PAGE)


class ConsoleAdmin:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._store = ledger.store

    async def list_keys(self, actor: Actor, org_id: str, team_id: str, include_revoked: bool) -> list[KeyRecord]:
        """Admin and finops: every key (filtered); anyone else: the keys of its own user (or itself)."""
        validate.text("org_id", org_id, 64)
        validate.text("team_id", team_id, 130)
        if actor.role in roles.READ_ALL:
            return await self._store.read(lambda: sql_admin.list_keys(org_id, team_id, include_revoked))
        keys = await self._store.read(lambda: sql_console.own_keys(actor.user_id, actor.key_id, include_revoked))
        return [k for k in keys if (not org_id or k.org_id == org_id) and (not team_id or k.team_id == team_id)]

    async def list_requests(self, actor: Actor, q: RequestsQuery) -> tuple[list[RequestRecord], str]:
        q = validate_query(q)
        _check_filters(actor, q)
        scope = requests_scope(actor)
        if q.key_id:
            key = await self._store.read(lambda: load_key_by_id(q.key_id))
            visible = key is not None and (not scope.column or getattr(key, scope.column) == scope.value)
            if not visible:
                # The same answer for a key that does not exist and one outside the
                # caller's scope, so a viewer cannot probe other teams' key ids.
                raise NotFound(f"no API key {q.key_id!r} in what this key may read; the Keys page lists them")
        q = replace(q, scope=scope)
        return await self._store.read(lambda: sql_requests.list_requests(q))

    async def set_org_settings(self, org_id: str, log_prompts: bool, actor: str = "system") -> Org:
        """Turn an org's prompt logging on or off (audited as ``orgs.settings``)."""
        validate.text("org_id", org_id, 64, required=True)
        now = self._ledger.now()

        def change() -> Op[dict[str, object]]:
            after = yield from sql_requests.set_log_prompts(org_id, log_prompts)
            if after is None:
                raise NotFound(f"org {org_id!r} does not exist; `rationer keys list --all` shows the orgs")
            return after

        before = sql_requests.org_settings
        out = await self._store.write(lambda: audit.audited(
            actor, "orgs.settings", lambda o: str(o["id"]), change(), now, before(org_id)))  # fmt: skip
        self._ledger.invalidate()  # cached keys carry the org's setting
        return Org(str(out["id"]), str(out["name"]), bool(out["isolate_teams"]), bool(out["log_prompts"]))
