"""Bad input and faults: precise status, actionable message, no crash, money intact."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rationer.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.calls import CommitCall
from services.ledger.store import SQLiteStore
from testsupport.ledger import make_key, running_ledger, settings_for


async def test_bad_keys_tokens_fields_and_reservations(tmp_path: Path) -> None:
    async with running_ledger(settings_for("sqlite", tmp_path)) as led:
        c = led.client
        k = await make_key(led.admin)
        other = await make_key(led.admin, email="mallory@acme.com")
        with pytest.raises(Unauthenticated, match="unknown API key"):
            await c.authenticate("rk-not-a-real-key")
        with pytest.raises(InvalidArgument, match="api_key is 300 bytes"):
            await c.authenticate("x" * 300)
        assert (await c.authenticate(k.secret)).key_id == k.key_id
        with pytest.raises(InvalidArgument, match="estimated_prompt_tokens"):
            await c.authorize(k.key_id, "frontier", prompt_tokens=-5, max_completion_tokens=1)
        with pytest.raises(InvalidArgument, match="max_completion_tokens"):
            await c.authorize(k.key_id, "frontier", prompt_tokens=1, max_completion_tokens=10**12)
        with pytest.raises(InvalidArgument, match="project is 200 bytes"):
            await c.authorize(k.key_id, "frontier", prompt_tokens=1, max_completion_tokens=1, project="p" * 200)
        with pytest.raises(InvalidArgument, match="ttl"):
            await c.authorize(k.key_id, "frontier", prompt_tokens=1, max_completion_tokens=1, ttl_s=10**6)
        with pytest.raises(Unauthenticated, match="unknown API key"):
            await c.authorize("k_nope", "frontier", prompt_tokens=1, max_completion_tokens=1)
        res = await c.authorize(k.key_id, "frontier", prompt_tokens=10, max_completion_tokens=10)
        with pytest.raises(NotFound, match="does not exist"):
            await c.commit(CommitCall("r_does_not_exist", k.key_id, 1, 1))
        with pytest.raises(PermissionDenied, match="another API key"):
            await c.commit(CommitCall(res.reservation_id, other.key_id, 1, 1))
        with pytest.raises(PermissionDenied, match="another API key"):
            await c.release(res.reservation_id, other.key_id)
        with pytest.raises(InvalidArgument, match=r"usage\.completion_tokens"):
            await c.commit(CommitCall(res.reservation_id, k.key_id, 1, -1))
        await c.commit(CommitCall(res.reservation_id, k.key_id, 10, 10))  # the hold survived every bad call
        await led.admin.revoke_key(k.key_id)
        with pytest.raises(Unauthenticated, match="revoked"):
            await c.authenticate(k.secret)
        with pytest.raises(Unauthenticated, match="revoked"):
            await c.authorize(k.key_id, "frontier", prompt_tokens=1, max_completion_tokens=1)
        short = await led.admin.create_key(user_id=other.user_id, ttl_s=0.3)
        await asyncio.sleep(0.5)
        with pytest.raises(Unauthenticated, match="expired"):
            await c.authenticate(short.secret)
        assert len(await led.admin.list_events(kind="charge")) == 1


async def test_admin_credentials(tmp_path: Path) -> None:
    async with running_ledger(settings_for("sqlite", tmp_path)) as led:
        k = await make_key(led.admin)
        for token in ("", "wrong-token"):
            async with LedgerAdminClient(led.target, token) as bad:
                with pytest.raises(Unauthenticated):
                    await bad.create_org("evil")
        async with LedgerAdminClient(led.target, k.secret) as as_user:
            with pytest.raises(PermissionDenied):
                await as_user.create_org("evil")
            # Any key may list keys, but a member sees only its own user's (docs/ledger.md, L25).
            assert [r.key_id for r in await as_user.list_keys()] == [k.key_id]
        admin_key = await led.admin.create_key(user_id=k.user_id, admin=True)
        async with LedgerAdminClient(led.target, admin_key.secret) as as_admin:
            assert len(await as_admin.list_keys(org_id=k.org_id)) == 2
            with pytest.raises(NotFound, match="does not exist"):
                await as_admin.set_budget("team", "acme/nope", unit="usd", period="daily", hard_limit=1)
            with pytest.raises(InvalidArgument, match="must be 1-64"):
                await as_admin.create_org("bad/name")
            with pytest.raises(InvalidArgument, match="exactly one"):
                await as_admin.create_key(team_id=k.team_id)


@pytest.fixture
def scratch_database(pg_schema: Any) -> Iterator[tuple[str, str]]:
    """A whole database of our own, so we can refuse connections to it safely."""
    base = pg_schema.base_dsn
    name = f"ledger_fault_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name, base.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_postgres_outage_gives_unavailable_then_recovers(
    tmp_path: Path, scratch_database: tuple[str, str], pg_schema: Any
) -> None:
    name, dsn = scratch_database
    settings = settings_for("postgres", tmp_path, dsn, db_timeout_s=1.0, auth_cache_ttl_s=0)
    async with running_ledger(settings) as led:
        k = await make_key(led.admin)
        await led.admin.set_budget("key", k.key_id, unit="usd", period="lifetime", hard_limit=10**9)
        ok = await led.client.authorize(k.key_id, "local-small", prompt_tokens=5, max_completion_tokens=5)
        with psycopg.connect(pg_schema.base_dsn, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        for _ in range(3):
            with pytest.raises(Unavailable, match="unavailable"):
                await led.client.commit(CommitCall(ok.reservation_id, k.key_id, 5, 5))
        with psycopg.connect(pg_schema.base_dsn, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        deadline = time.monotonic() + 30
        while True:
            try:
                done = await led.client.commit(CommitCall(ok.reservation_id, k.key_id, 5, 5))
                break
            except Unavailable:
                assert time.monotonic() < deadline, "ledger did not recover after PostgreSQL came back"
                await asyncio.sleep(0.2)
        assert not done.replayed
        assert (await led.client.commit(CommitCall(ok.reservation_id, k.key_id, 5, 5))).replayed
        (b,) = await led.admin.list_budgets("key", k.key_id)
        assert b.spent == done.event.cost and b.held == 0


def _count_versions() -> Any:
    rows = yield ("SELECT COUNT(*) FROM schema_version", ())
    return rows[0][0]


async def test_sqlite_writer_survives_a_failed_connection_and_a_locked_database(tmp_path: Path) -> None:
    # The single writer thread must outlive any failure: if it died, every
    # write would wait forever while health still said SERVING.
    store = SQLiteStore(tmp_path / "ledger.sqlite3", busy_s=0.3)
    await store.start()
    real_connect, failures = store._connect, [1]

    def flaky_connect() -> sqlite3.Connection:
        if failures:
            failures.pop()
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect()

    store._connect = flaky_connect  # type: ignore[method-assign]
    try:
        with pytest.raises(Unavailable, match="unable to open database file"):
            await asyncio.wait_for(store.write(_count_versions), 10)
        assert await asyncio.wait_for(store.write(_count_versions), 10) >= 1
        # Another process holds the write lock past the busy timeout: UNAVAILABLE, then recovery.
        blocker = sqlite3.connect(tmp_path / "ledger.sqlite3", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(Unavailable, match=r"could not commit|locked"):
            await asyncio.wait_for(store.write(_count_versions), 10)
        blocker.execute("ROLLBACK")
        blocker.close()
        assert await asyncio.wait_for(store.write(_count_versions), 10) >= 1
    finally:
        await store.close()
