"""`rationer bench ledger`: Authorize+Commit pairs/s and latency vs a no-op gRPC ceiling.

Each target server runs in its own process (so the client does not steal its
event loop): a no-op service on the same platform server (same interceptor,
same messages, a handler that returns an empty reply), then the ledger on
SQLite and on PostgreSQL. Every number is measured in this run and the ledger's
throughput is reported as a ratio of the no-op ceiling.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ADMIN = "bench-admin-token"
# Both targets demand it, so the no-op ceiling pays for the check too.
SERVICE_TOKEN = "bench-service-token-0123456789"


def _noop_register(server: Any) -> None:
    import grpc

    from rationer.api.ledger.v1 import ledger_pb2 as pb

    async def authorize(request: Any, context: Any) -> Any:
        return pb.AuthorizeResponse()

    async def commit(request: Any, context: Any) -> Any:
        return pb.CommitResponse()

    handlers = {
        "Authorize": grpc.unary_unary_rpc_method_handler(
            authorize, request_deserializer=pb.AuthorizeRequest.FromString,
            response_serializer=pb.AuthorizeResponse.SerializeToString),
        "Commit": grpc.unary_unary_rpc_method_handler(
            commit, request_deserializer=pb.CommitRequest.FromString,
            response_serializer=pb.CommitResponse.SerializeToString),
    }  # fmt: skip
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("rationer.ledger.v1.LedgerService",
                                                                           handlers),))  # fmt: skip


async def _serve(kind: str, settings: dict[str, Any], conn: Connection) -> None:
    from rationer.platform.interceptor import ServiceCredential
    from rationer.platform.server import build_server, start

    deps = None
    if kind == "noop":
        server, port = build_server("127.0.0.1:0", service="noop", service_names=(), register=_noop_register,
                                    credential=ServiceCredential(SERVICE_TOKEN))  # fmt: skip
    else:
        from services.ledger.server import create_server
        from services.ledger.settings import LedgerSettings
        from services.ledger.wiring import build_deps

        deps = await build_deps(LedgerSettings.model_validate(settings), sweeper=False)
        server, port = create_server("127.0.0.1:0", deps, service_token=SERVICE_TOKEN)
    await start(server)
    conn.send(port)
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    await server.stop(None)
    if deps is not None:
        from services.ledger.wiring import close_deps

        await close_deps(deps)


def _server_process(kind: str, settings: dict[str, Any], conn: Connection) -> None:
    from rationer.platform.logging import configure_logging

    configure_logging("console", "ERROR")  # stdout stays clean for --json
    asyncio.run(_serve(kind, settings, conn))


async def _setup_key(target: str) -> str:
    from services.ledger.admin_client import LedgerAdminClient
    from testsupport.ledger import make_key

    async with LedgerAdminClient(target, ADMIN) as admin:
        k = await make_key(admin, org="bench", team="load", email="load@bench.io")
        for kind, sid in (("key", k.key_id), ("team", k.team_id), ("org", k.org_id)):
            await admin.set_budget(kind, sid, unit="usd", period="monthly", hard_limit=10**17)
    return k.key_id


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def _load(target: str, key_id: str, clients: int, duration: float, noop: bool) -> dict[str, float]:
    from services.ledger.calls import CommitCall
    from services.ledger.client import LedgerClient

    pool = [LedgerClient(target, service_token=SERVICE_TOKEN) for _ in range(min(clients, 8))]
    auth_lat: list[float] = []
    pairs = 0
    stop_at = time.perf_counter() + duration

    async def worker(i: int) -> None:
        nonlocal pairs
        client = pool[i % len(pool)]
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            r = await client.authorize(key_id, "local-small", prompt_tokens=200, max_completion_tokens=256)
            auth_lat.append(time.perf_counter() - t0)
            await client.commit(CommitCall(r.reservation_id or "noop", key_id, 180, 90, latency_ms=5))
            pairs += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    for client in pool:
        await client.close()
    return {"pairs_per_s": round(pairs / elapsed, 1), "authorize_p50_ms": round(_pct(auth_lat, 0.5) * 1e3, 3),
            "authorize_p99_ms": round(_pct(auth_lat, 0.99) * 1e3, 3), "pairs": pairs}  # fmt: skip


class _Server:
    """A target server in its own (spawned) process."""

    def __init__(self, kind: str, settings: dict[str, Any]) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_server_process, args=(kind, settings, child), daemon=True)
        self._proc.start()
        if not self._conn.poll(60):
            raise RuntimeError(f"{kind} bench server did not start")
        self.target = f"127.0.0.1:{self._conn.recv()}"
        self.pid = self._proc.pid or 0

    def stop(self) -> None:
        self._conn.send("stop")
        self._proc.join(30)


def _merge(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    pairs = a["pairs"] + b["pairs"]
    return {"pairs_per_s": round((a["pairs_per_s"] + b["pairs_per_s"]) / 2, 1),
            "authorize_p50_ms": round((a["authorize_p50_ms"] + b["authorize_p50_ms"]) / 2, 3),
            "authorize_p99_ms": max(a["authorize_p99_ms"], b["authorize_p99_ms"]), "pairs": pairs}  # fmt: skip


async def _measure_all(servers: dict[str, _Server], clients: list[int], duration: float) -> dict[str, Any]:
    """Interleave targets (noop, ledger, ..., then again) at each concurrency, so a
    shared machine's load drifts equally over the ceiling and the ledger."""
    keys = {name: ("k_noop" if name == "noop" else await _setup_key(srv.target)) for name, srv in servers.items()}
    for name, srv in servers.items():
        await _load(srv.target, keys[name], 8, min(1.0, duration), name == "noop")  # warm-up
    out: dict[str, Any] = {name: {} for name in servers}
    for c in clients:
        halves: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for _ in range(2):
            for name, srv in servers.items():
                halves[name].append(await _load(srv.target, keys[name], c, duration / 2, name == "noop"))
        for name in servers:
            out[name][str(c)] = _merge(*halves[name])
    return out


def run(backend: str, duration: float, clients: list[int], postgres_dsn: str) -> dict[str, Any]:
    backends = ["sqlite", "postgres"] if backend == "both" else [backend]
    servers: dict[str, _Server] = {}
    schema = ""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            servers["noop"] = _Server("noop", {})
            for b in backends:
                settings: dict[str, Any] = {"backend": b, "admin_token": ADMIN,
                                            "sqlite_path": str(Path(tmp) / "bench.sqlite3")}  # fmt: skip
                if b == "postgres":
                    schema = _create_schema(postgres_dsn)
                    sep = "&" if "?" in postgres_dsn else "?"
                    settings["postgres_dsn"] = f"{postgres_dsn}{sep}options=-csearch_path%3D{schema}"
                servers[b] = _Server("ledger", settings)
            results = asyncio.run(_measure_all(servers, clients, duration))
        finally:
            for srv in servers.values():
                srv.stop()
            if schema:
                _drop_schema(postgres_dsn, schema)
    out: dict[str, Any] = {"duration_s": duration, "clients": clients, "cpus": os.cpu_count(), **results}
    for b in backends:
        for c, row in out[b].items():
            ceiling = out["noop"][c]["pairs_per_s"]
            row["ratio_to_noop"] = round(row["pairs_per_s"] / ceiling, 3) if ceiling else 0.0
    if "sqlite" in out and "64" in out["sqlite"]:
        s64 = out["sqlite"]["64"]
        out["targets"] = {"sqlite_64_ratio_ge_0.5": s64["ratio_to_noop"] >= 0.5,
                          "sqlite_64_authorize_p99_le_10ms": s64["authorize_p99_ms"] <= 10.0}  # fmt: skip
    return out


def _create_schema(dsn: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return name


def _drop_schema(dsn: str, name: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def main(json_out: bool, backend: str, duration: float, clients: list[int], postgres_dsn: str) -> None:
    """The report of ``rationer bench ledger`` (its command configures logging; so does each server process)."""
    result = run(backend, duration, clients, postgres_dsn)
    if json_out:
        print(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ledger bench: Authorize+Commit pairs ({duration:g}s per point)")
    for col in ("target", "clients", "pairs/s", "ratio to no-op", "Authorize p50 ms", "Authorize p99 ms"):
        table.add_column(col, justify="right")
    for name in ("noop", "sqlite", "postgres"):
        for c, row in result.get(name, {}).items():
            table.add_row(name, c, f"{row['pairs_per_s']:.0f}", str(row.get("ratio_to_noop", "1.0")),
                          f"{row['authorize_p50_ms']:.2f}", f"{row['authorize_p99_ms']:.2f}")  # fmt: skip
    Console().print(table)
    if "targets" in result:
        Console().print(result["targets"])
