"""Who may call the ledger's admin and report RPCs.

Roles live on the key (``api_keys.role``). ``member`` is every key made
before roles existed and every key made without ``--role``: the data plane
plus Usage of its own org, exactly what such a key could do before, so the
migration changes nobody's access. The admin token is a full admin.

| role   | Usage / requests log | budgets         | events | list keys        | change keys, prices, limits; audit |
|--------|----------------------|-----------------|--------|------------------|------------------------------------|
| admin  | all                  | read and change | yes    | all              | yes                                |
| finops | all                  | read and change | yes    | all (read-only)  | no                                 |
| member | own org              | no              | no     | own user's       | no                                 |
| viewer | own team             | no              | no     | own user's       | no                                 |
"""

from __future__ import annotations

from dataclasses import dataclass

from rationer.errors import InvalidArgument, PermissionDenied

ROLES = ("admin", "finops", "viewer", "member")
READ_ALL = frozenset({"admin", "finops"})
BUDGETS = frozenset({"admin", "finops"})
ADMIN = frozenset({"admin"})


@dataclass(frozen=True)
class Actor:
    """The caller of an admin or report RPC."""

    role: str
    key_id: str = ""  # "" for the admin token
    org_id: str = ""
    team_id: str = ""
    user_id: str = ""  # "" for the admin token and team service keys

    @property
    def name(self) -> str:
        """How the audit log names the caller."""
        return f"key:{self.key_id}" if self.key_id else "admin-token"


ADMIN_TOKEN = Actor("admin")


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidArgument(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role


def require(actor: Actor, allowed: frozenset[str], what: str) -> None:
    """PERMISSION_DENIED naming the caller's role and the roles that may do ``what``."""
    if actor.role in allowed:
        return
    need = " or ".join(r for r in ROLES if r in allowed)
    raise PermissionDenied(
        f"API key {actor.key_id} has role {actor.role!r} and may not {what}; that needs role {need}: "
        f"use a key made with `rationer keys create --role {'finops' if 'finops' in allowed else 'admin'}` "
        "or the ledger admin token",
        reason="role",
    )


def usage_scope(actor: Actor, kind: str, scope_id: str, key_team: str | None) -> tuple[str, str]:
    """The scope a viewer may read: its own team (``key_team``: the team of a key scope)."""
    if actor.role != "viewer":
        return kind, scope_id
    if not kind:
        return "team", actor.team_id
    team = {"team": scope_id, "user": scope_id.rsplit("/", 1)[0], "key": key_team or ""}.get(kind)
    if team != actor.team_id:
        raise PermissionDenied(
            f"API key {actor.key_id} has role 'viewer' and may read only its own team {actor.team_id!r}, "
            f"not {kind} {scope_id!r}; ask for scope team:{actor.team_id}, or use a finops key",
            reason="role",
        )
    return kind, scope_id
