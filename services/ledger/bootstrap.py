"""Programmatic bootstrap for `rationer up`: a demo org, team, user, key and budget."""

from __future__ import annotations

from dataclasses import dataclass

from services.ledger.admin_client import LedgerAdminClient


@dataclass(frozen=True)
class DemoCredentials:
    org_id: str
    team_id: str
    user_id: str
    key_id: str
    api_key: str  # the secret; shown once
    budget_id: str


async def bootstrap_demo(target: str, admin_token: str, *, org: str = "demo", team: str = "default",
                         email: str = "demo@example.com", monthly_usd: float = 10.0) -> DemoCredentials:  # fmt: skip
    """Create (or reuse) org/team/user, a fresh key, and a monthly USD budget on the org.

    Safe to call on every start: org, team, user and budget are upserts; each
    call mints a new key because a secret can only ever be shown once.
    """
    async with LedgerAdminClient(target, admin_token) as admin:
        o = await admin.create_org(org)
        t = await admin.create_team(o.id, team)
        u = await admin.create_user(t.id, email)
        created = await admin.create_key(user_id=u.id, name="demo")
        b = await admin.set_budget("org", o.id, unit="usd", period="monthly",
                                   hard_limit=int(monthly_usd * 1_000_000_000))  # fmt: skip
    return DemoCredentials(o.id, t.id, u.id, created.key.key_id, created.secret, b.id)
