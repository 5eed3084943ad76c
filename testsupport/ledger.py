"""Helpers for tests of the ledger (and of services that need a real one)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rationer.platform.clock import SYSTEM_CLOCK, Clock
from rationer.platform.server import start
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.calls import CacheHitCall
from services.ledger.client import LedgerClient
from services.ledger.server import LedgerDeps, create_server
from services.ledger.settings import LedgerSettings
from services.ledger.wiring import build_deps, close_deps
from testsupport.platform import SERVICE_TOKEN

ADMIN_TOKEN = "test-admin-token"


def settings_for(backend: str, tmp_path: Path, pg_dsn: str = "", **overrides: Any) -> LedgerSettings:
    data: dict[str, Any] = {
        "backend": backend, "sqlite_path": tmp_path / "ledger.sqlite3", "admin_token": ADMIN_TOKEN,
        "postgres_dsn": pg_dsn or "postgresql://postgres@127.0.0.1:5432/test",
    }  # fmt: skip
    data.update(overrides)
    return LedgerSettings.model_validate(data)


@dataclass
class RunningLedger:
    target: str
    deps: LedgerDeps
    client: LedgerClient  # presents SERVICE_TOKEN
    admin: LedgerAdminClient
    service_token: str = SERVICE_TOKEN


@asynccontextmanager
async def running_ledger(
    settings: LedgerSettings, *, sweeper: bool = False, clock: Clock = SYSTEM_CLOCK
) -> AsyncIterator[RunningLedger]:
    """A real ledger gRPC server on 127.0.0.1:<free port>, with clients.

    Its data plane demands ``SERVICE_TOKEN``, which ``client`` presents."""
    deps = await build_deps(settings, sweeper=sweeper, clock=clock)
    server, port = create_server("127.0.0.1:0", deps, service_token=SERVICE_TOKEN)
    await start(server)
    target = f"127.0.0.1:{port}"
    client = LedgerClient(target, service_token=SERVICE_TOKEN)
    admin = LedgerAdminClient(target, settings.admin_token or "")
    try:
        yield RunningLedger(target, deps, client, admin)
    finally:
        await client.close()
        await admin.close()
        await server.stop(None)
        await close_deps(deps)


@dataclass(frozen=True)
class TestKey:
    key_id: str
    secret: str
    org_id: str
    team_id: str
    user_id: str


async def make_key(admin: LedgerAdminClient, org: str = "acme", team: str = "eng",
                   email: str = "alice@acme.com", **kw: Any) -> TestKey:  # fmt: skip
    o = await admin.create_org(org)
    t = await admin.create_team(o.id, team)
    u = await admin.create_user(t.id, email)
    created = await admin.create_key(user_id=u.id, **kw)
    return TestKey(created.key.key_id, created.secret, o.id, t.id, u.id)


def cache_hit(key_id: str, request_id: str, *, project: str = "", tier: str = "", model: str = "",
              prompt_tokens: int = 0, completion_tokens: int = 0, **rest: Any) -> CacheHitCall:  # fmt: skip
    """A ``CacheHitCall`` with the defaults tests leave out (``rest``: latency_ms, record_id, served)."""
    return CacheHitCall(key_id=key_id, request_id=request_id, project=project, tier=tier, model=model,
                        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, **rest)  # fmt: skip
