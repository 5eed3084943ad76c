"""kill -9 during load: every acknowledged Commit survives, none is duplicated."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from rationer.errors import RationerError
from rationer.platform.net import free_port
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.calls import CommitCall
from services.ledger.client import LedgerClient
from testsupport.ledger import ADMIN_TOKEN, make_key
from testsupport.platform import SERVICE_TOKEN


def write_config(path: Path, backend: str, port: int, pg_dsn: str) -> Path:
    cfg = path / "ledger.toml"
    cfg.write_text(
        "[ledger]\n"
        f'listen = "127.0.0.1:{port}"\nbackend = "{backend}"\n'
        f'sqlite_path = "{path / "ledger.sqlite3"}"\npostgres_dsn = "{pg_dsn}"\n'
        f'admin_token = "{ADMIN_TOKEN}"\nservice_token = "{SERVICE_TOKEN}"\n',
        encoding="utf-8",
    )
    return cfg


async def start_ledger(cfg: Path, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rationer.cli.main", "serve", "ledger", "--config", str(cfg),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    async with LedgerClient(f"127.0.0.1:{port}", timeout_s=1) as c:
        while True:
            try:
                await c.list_prices()
                return proc
            except RationerError:
                assert proc.returncode is None, "ledger exited during start-up"
                assert time.monotonic() < deadline, "ledger did not start within 60 s"
                await asyncio.sleep(0.1)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_acknowledged_commits_survive_sigkill(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else ""
    port = free_port()
    cfg = write_config(tmp_path, backend, port, dsn)
    target = f"127.0.0.1:{port}"
    proc = await start_ledger(cfg, port)
    acked: dict[str, str] = {}  # reservation id -> event id, for every Commit the server acknowledged
    try:
        async with LedgerAdminClient(target, ADMIN_TOKEN) as admin:
            k = await make_key(admin)
            await admin.set_budget("key", k.key_id, unit="tokens", period="lifetime", hard_limit=10**12)
        async with LedgerClient(target, timeout_s=5, service_token=SERVICE_TOKEN) as c:

            async def worker(w: int) -> None:
                for i in range(10_000):
                    try:
                        r = await c.authorize(k.key_id, "local-small", prompt_tokens=10, max_completion_tokens=10,
                                              request_id=f"w{w}-{i}")
                        done = await c.commit(CommitCall(r.reservation_id, k.key_id, 10, 5))
                    except RationerError:
                        return  # the server died under us
                    acked[r.reservation_id] = done.event.event_id

            workers = [asyncio.create_task(worker(w)) for w in range(8)]
            while len(acked) < 150:
                await asyncio.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
            await asyncio.gather(*workers)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    proc = await start_ledger(cfg, port)
    try:
        async with LedgerAdminClient(target, ADMIN_TOKEN) as admin, \
                LedgerClient(target, service_token=SERVICE_TOKEN) as c:
            charges = await admin.list_events(kind="charge")
            by_id = {e.event_id for e in charges}
            assert set(acked.values()) <= by_id, "an acknowledged commit was lost"
            # One charge per request (request ids are unique per reservation).
            assert len({e.request_id for e in charges}) == len(charges), "a request was charged twice"
            # The budget agrees with the event log: no charge half-applied.
            (budget,) = await admin.list_budgets("key", k.key_id)
            assert budget.spent == sum(e.prompt_tokens + e.completion_tokens for e in charges)
            # a retried Commit after the crash replays, never charges twice
            sample = list(acked)[:20]
            for res_id in sample:
                again = await c.commit(CommitCall(res_id, k.key_id, 10, 5))
                assert again.replayed and again.event.event_id == acked[res_id]
            assert len(await admin.list_events(kind="charge")) == len(charges)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
