"""``rationer bench up``: how long ``rationer up`` takes to be ready, started several times.

Ready = all four services (ledger, cache, SLM worker, router) answer gRPC
health with SERVING and the HTTP door's ``/readyz`` answers 200. One
unmeasured first start creates the data dir (credentials, the ledger's
database, the demo key: the "install"); each measured start then reuses it,
as an operator's restart does. Every start is stopped with SIGTERM (what
Ctrl-C does) before the next one begins.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rationer.platform.net import free_port, free_port_block

TARGET_S = 5.0
SERVICES = ("ledger", "cache", "worker0", "router")


def _ports(base: int) -> dict[str, int]:
    return {"router": base, "ledger": base + 1, "cache": base + 2, "worker0": base + 3}


async def _serving(address: str) -> bool:
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            resp = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
            return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.aio.AioRpcError:
        return False


async def _ready(http: httpx.AsyncClient, ports: dict[str, int]) -> bool:
    try:
        if (await http.get("/readyz")).status_code != 200:
            return False
    except httpx.HTTPError:
        return False
    checks = await asyncio.gather(*(_serving(f"127.0.0.1:{ports[s]}") for s in SERVICES))
    return all(checks)


def _spawn(data_dir: Path, base: int, http_port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "rationer.cli.main", "up", "--data-dir", str(data_dir),
           "--base-port", str(base), "--http-port", str(http_port)]  # fmt: skip
    log = open(data_dir.parent / f"up-{base}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def time_one_start(data_dir: Path, *, timeout_s: float = 180.0) -> float:
    """Seconds from spawning ``rationer up`` to ready (raises if it exits or times out first)."""
    base, http_port = free_port_block(len(SERVICES)), free_port()
    ports = _ports(base)
    started = time.perf_counter()
    proc = _spawn(data_dir, base, http_port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=0.5) as http:
            while not await _ready(http, ports):
                if proc.poll() is not None:
                    tail = (data_dir.parent / f"up-{base}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"rationer up exited with {proc.returncode}:\n{tail}")
                if time.perf_counter() - started > timeout_s:
                    raise RuntimeError(f"rationer up not ready within {timeout_s:.0f} s")
                await asyncio.sleep(0.05)
        return time.perf_counter() - started
    finally:
        _stop(proc)


async def run_bench(*, starts: int = 5, data_dir: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rationer-bench-up-") as tmp:
        data = data_dir or Path(tmp) / "data"
        first = await time_one_start(data)  # creates credentials and the ledger's database
        times = [await time_one_start(data) for _ in range(starts)]
    median = statistics.median(times)
    return {
        "first_start_s": round(first, 3),
        "starts_s": [round(t, 3) for t in times],
        "median_s": round(median, 3),
        "target_s": TARGET_S,
        "meets_target": median <= TARGET_S,
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
