"""The trust boundary: the ledger's data plane, the cache and the workers answer
only the router's service token.

Every RPC is listed from the proto descriptors, so an RPC added later is
checked too. Real servers on loopback (services/*/testing.py).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rationer.api.cache.v1 import cache_pb2
from rationer.api.ledger.v1 import ledger_pb2
from rationer.api.worker.v1 import worker_pb2
from rationer.platform.client import internal_channel
from rationer.platform.interceptor import SERVICE_TOKEN_KEY
from rationer.up import Supervisor, UpOptions
from services.ledger.server import OPEN_METHODS
from testsupport.cache import running_cache
from testsupport.ledger import ADMIN_TOKEN, running_ledger, settings_for
from testsupport.platform import SERVICE_TOKEN
from testsupport.slm_worker import running_worker

WRONG = "not-the-service-token-0123456789"


def _rpcs(module: object, service: str) -> list[tuple[str, bool]]:
    desc = module.DESCRIPTOR.services_by_name[service]  # type: ignore[attr-defined]
    return [(f"/{desc.full_name}/{m.name}", m.server_streaming) for m in desc.methods]


async def _call(channel: grpc.aio.Channel, path: str, streaming: bool,
                metadata: tuple[tuple[str, str], ...] = ()) -> str:  # fmt: skip
    """The status name, or "REFUSED" when the service token was what failed."""
    # An empty message is a valid encoding of every request type.
    try:
        if streaming:
            async for _ in channel.unary_stream(path)(b"", timeout=10, metadata=metadata):  # type: ignore[call-arg]
                pass
        else:
            await channel.unary_unary(path)(b"", timeout=10, metadata=metadata)  # type: ignore[call-arg]
    except grpc.aio.AioRpcError as exc:
        refused = exc.code() == grpc.StatusCode.UNAUTHENTICATED and SERVICE_TOKEN_KEY in (exc.details() or "")
        return "REFUSED" if refused else exc.code().name
    return "OK"


async def _assert_guarded(address: str, rpcs: list[tuple[str, bool]], *, open_methods: frozenset[str]) -> None:
    async with grpc.aio.insecure_channel(address) as bare, internal_channel(address, WRONG) as wrong, \
            internal_channel(address, SERVICE_TOKEN) as right:  # fmt: skip
        for path, streaming in rpcs:
            if path in open_methods:
                continue
            assert await _call(bare, path, streaming) == "REFUSED", path
            assert await _call(wrong, path, streaming) == "REFUSED", path
            # The service token in the wrong place (an API key's) does not count either.
            bearer = (("authorization", f"Bearer {SERVICE_TOKEN}"),)
            assert await _call(bare, path, streaming, bearer) == "REFUSED", path
            # With the token the call gets past the gate (then the empty request is judged on its fields).
            assert await _call(right, path, streaming) != "REFUSED", path
        reply = await health_pb2_grpc.HealthStub(bare).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING  # health stays open


@pytest.fixture
async def ledger_target(tmp_path: Path) -> AsyncIterator[str]:
    async with running_ledger(settings_for("sqlite", tmp_path)) as led:
        yield led.target


async def test_ledger_data_plane_needs_the_service_token(ledger_target: str) -> None:
    rpcs = _rpcs(ledger_pb2, "LedgerService")
    guarded = {p for p, _ in rpcs} - OPEN_METHODS
    assert {p.rsplit("/", 1)[1] for p in guarded} == {
        "Authenticate", "GetHeadroom", "Authorize", "Commit", "Release", "RecordCacheHit",
        "RecordWrongHit"}  # fmt: skip
    await _assert_guarded(ledger_target, rpcs, open_methods=OPEN_METHODS)


async def test_ledger_open_rpcs_answer_their_own_credentials(ledger_target: str) -> None:
    """Usage, ListPrices and the admin service are for people and tools: no service token."""
    admin = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
    async with grpc.aio.insecure_channel(ledger_target) as bare:
        for path, streaming in _rpcs(ledger_pb2, "LedgerService"):
            if path.endswith(("/Usage", "/ListPrices")):
                assert await _call(bare, path, streaming, admin) == "OK", path
        # An admin RPC without the admin credential is refused for that, not for the service token.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await bare.unary_unary("/rationer.ledger.v1.LedgerAdminService/ListKeys")(b"")  # type: ignore[call-arg]
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert SERVICE_TOKEN_KEY not in (info.value.details() or "")


async def test_cache_needs_the_service_token_on_every_rpc() -> None:
    async with running_cache() as running:
        await _assert_guarded(running.address, _rpcs(cache_pb2, "CacheService"), open_methods=frozenset())


async def test_worker_needs_the_service_token_on_every_rpc() -> None:
    async with running_worker() as w:
        await _assert_guarded(w.target, _rpcs(worker_pb2, "WorkerService"), open_methods=frozenset())


def test_a_service_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    cfg = tmp_path / "ledger.toml"
    cfg.write_text(f'[ledger]\nlisten = "127.0.0.1:0"\nsqlite_path = "{tmp_path / "l.sqlite3"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATIONER_")}
    proc = subprocess.run([sys.executable, "-m", "rationer.cli.main", "serve", "ledger", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert proc.returncode != 0
    assert "ledger: refusing to start: no service token configured; set RATIONER_SERVICE_TOKEN" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_rationer_up_generates_the_token_and_keeps_it_out_of_the_config(tmp_path: Path) -> None:
    sup = Supervisor(UpOptions(data_dir=tmp_path / "data"))
    token_file = tmp_path / "data" / "service_token"
    token = token_file.read_text().strip()
    assert len(token) >= 32 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token not in sup.config_path.read_text()
    assert {c.env["RATIONER_SERVICE_TOKEN"] for c in sup.children} == {token}  # router and every service
    again = Supervisor(UpOptions(data_dir=tmp_path / "data"))  # a second run keeps the first token
    assert {c.env["RATIONER_SERVICE_TOKEN"] for c in again.children} == {token}
