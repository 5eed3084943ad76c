"""``rationer bench http``: what the front door adds on the cache-miss path.

An instant OpenAI-compatible upstream (aiohttp, its own process) is the only
tier; a real ledger (SQLite) and router (gRPC + HTTP) run as their own
processes, exactly as ``rationer serve`` runs them. The same requests are
driven, in one run, straight at the upstream, through the HTTP front door
and through gRPC; the differences are the gateway's overhead. Every routed
request sends ``no_cache`` and names the frontier tier, so each one pays the
full path: auth, embed, score, headroom, Authorize, upstream call, Commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import tomli_w
from aiohttp import web

from rationer.client import AsyncClient
from rationer.platform.net import free_port
from testsupport.processes import stop_processes

ANSWER = "The quick brown fox jumps over the lazy dog."
TIER, MODEL = "frontier", "bench-frontier"
ADMIN_TOKEN = "bench-admin-token"
SERVICE_TOKEN = "bench-service-token-0123456789"
# The child runs ``python -c``: bench/ is not installed, so it is found from this checkout.
CHECKOUT = str(Path(__file__).resolve().parents[1])
UPSTREAM_MAIN = (
    f"import sys; sys.path.insert(0, {CHECKOUT!r}); from bench.router_http import serve_upstream; serve_upstream"
)


# ---- the instant upstream -------------------------------------------------


def upstream_app() -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body.get("model", MODEL)
        usage = {"prompt_tokens": 24, "completion_tokens": 10, "total_tokens": 34}
        if body.get("stream"):  # OpenAI's SSE shape, with include_usage's last chunk
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            chunks: list[dict[str, Any]] = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ANSWER},
                                    "finish_reason": None}]},
                      {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                      {"choices": [], "usage": usage}]  # fmt: skip
            for c in chunks:
                chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": model, **c}
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
            return resp
        return web.json_response({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": usage,
        })  # fmt: skip

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


def serve_upstream(port: int) -> None:
    web.run_app(upstream_app(), host="127.0.0.1", port=port, print=None, access_log=None)


# ---- processes ----------------------------------------------------------------


@dataclass
class Ports:
    upstream: int
    ledger: int
    router: int
    http: int


def _config(tmp: Path, p: Ports) -> dict[str, Any]:
    log = {"format": "json", "level": "WARNING"}
    return {
        "ledger": {"listen": f"127.0.0.1:{p.ledger}", "sqlite_path": str(tmp / "ledger.sqlite3"),
                   "admin_token": ADMIN_TOKEN, "service_token": SERVICE_TOKEN, "logging": log},
        "router": {"listen": f"127.0.0.1:{p.router}", "ledger_address": f"127.0.0.1:{p.ledger}",
                   "cache_address": "", "worker_addresses": [], "logging": log, "service_token": SERVICE_TOKEN,
                   "settlement_journal": str(tmp / "router-settlements.sqlite3"), "answer_before_commit": True,
                   "tiers": [{"name": TIER, "kind": "frontier", "rank": 0, "model": MODEL,
                              "base_url": f"http://127.0.0.1:{p.upstream}/v1", "max_retries": 0}],
                   "http": {"enabled": True, "listen": f"127.0.0.1:{p.http}"}},
    }  # fmt: skip


@contextlib.contextmanager
def _processes(tmp: Path, p: Ports) -> Iterator[list[subprocess.Popen[bytes]]]:
    cfg = tmp / "bench.toml"
    cfg.write_text(tomli_w.dumps(_config(tmp, p)))
    serve = [sys.executable, "-m", "rationer.cli.main", "serve"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for cmd, name in (
            ([sys.executable, "-c", f"{UPSTREAM_MAIN}({p.upstream})"], "upstream"),
            ([*serve, "ledger", "--config", str(cfg)], "ledger"),
        ):  # fmt: skip
            procs.append(subprocess.Popen(cmd, stdout=(tmp / f"{name}.log").open("wb"), stderr=subprocess.STDOUT))
        yield procs
    finally:
        stop_processes(procs)


def _start_router(tmp: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    cmd = [sys.executable, "-m", "rationer.cli.main", "serve", "router", "--config", str(tmp / "bench.toml")]
    procs.append(subprocess.Popen(cmd, stdout=(tmp / "router.log").open("wb"), stderr=subprocess.STDOUT))


async def _wait_http(url: str, procs: list[subprocess.Popen[bytes]], tmp: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            for proc in procs:
                if proc.poll() is not None:
                    logs = "\n".join(f.read_text()[-1500:] for f in tmp.glob("*.log"))
                    raise RuntimeError(f"a bench process exited early: {proc.args!r}\n{logs}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready within {timeout_s:.0f} s")
            await asyncio.sleep(0.2)


async def _api_key(ledger: str) -> str:
    from rationer.up import wait_serving
    from services.ledger.admin_client import LedgerAdminClient
    from testsupport.ledger import make_key

    await wait_serving(ledger, 60)
    async with LedgerAdminClient(ledger, ADMIN_TOKEN) as admin:
        return (await make_key(admin, org="bench", allowed_tiers=[TIER])).secret


# ---- load generation ---------------------------------------------------------

Call = Callable[[int], Awaitable[None]]
# The routed paths, each compared with calling the upstream directly.
PATHS = ("http", "grpc", "messages", "http_auto")


async def drive(
    call: Call, *, requests: int, concurrency: int, warmup: int, duration_s: float = 0.0
) -> tuple[list[float], float]:
    """Latencies (s) of ``requests`` calls made by ``concurrency`` workers, and the elapsed time.

    With ``duration_s`` the workers stop at that deadline instead (``requests`` is then only a cap)."""
    for i in range(warmup):
        await call(-1 - i)
    latencies: list[float] = []
    counter = iter(range(requests))
    deadline = time.perf_counter() + duration_s

    async def worker() -> None:
        for i in counter:
            if duration_s and time.perf_counter() >= deadline:
                return
            t = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def summarize(latencies: list[float], elapsed: float, concurrency: int) -> dict[str, float]:
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies), "concurrency": concurrency, "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }  # fmt: skip


def _messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Request {i}: summarise the benefits of unit tests in two sentences."}]


@contextlib.asynccontextmanager
async def http_caller(url: str, key: str, concurrency: int, *, model: str = "") -> AsyncIterator[Call]:
    """``model`` empty: a direct upstream call; otherwise routed, cache off."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

        async def call(i: int) -> None:
            body: dict[str, Any] = {"model": model or MODEL, "messages": _messages(i), "max_tokens": 16}
            if model:
                body["no_cache"] = True
            await _post(session, url, body, headers)

        yield call


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
    async with session.post(url, data=json.dumps(body), headers=headers) as resp:
        data = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url} answered {resp.status}: {data[:300]!r}")


@contextlib.asynccontextmanager
async def messages_caller(url: str, key: str, concurrency: int, *, model: str) -> AsyncIterator[Call]:
    """The Anthropic Messages door (``POST /v1/messages``), routed, cache off."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01", "Content-Type": "application/json",
                   "Cache-Control": "no-cache"}  # fmt: skip

        async def call(i: int) -> None:
            body = {"model": model, "messages": _messages(i), "max_tokens": 16}
            await _post(session, url, body, headers)

        yield call


@contextlib.asynccontextmanager
async def grpc_caller(address: str, key: str) -> AsyncIterator[Call]:
    async with AsyncClient(address, key) as client:

        async def call(i: int) -> None:
            await client.complete(_messages(i), model=TIER, max_tokens=16, no_cache=True, timeout=30)

        yield call


async def _measure(targets: dict[str, Callable[[int], Any]], *, requests: int, concurrency: int,
                   warmup: int, rounds: int, duration_s: float = 0.0) -> dict[str, dict[str, float]]:  # fmt: skip
    """Paths take turns in short rounds so that drifting background load on
    the machine hits each of them alike (``duration_s``: each path's total time, split over the rounds)."""
    lat: dict[str, list[float]] = {name: [] for name in targets}
    took = dict.fromkeys(targets, 0.0)
    for r in range(rounds):
        for name, make in targets.items():
            async with make(concurrency) as call:
                got, elapsed = await drive(call, requests=requests // rounds, concurrency=concurrency,
                                           warmup=warmup if r == 0 else concurrency,
                                           duration_s=duration_s / rounds)  # fmt: skip
            lat[name] += got
            took[name] += elapsed
    return {name: summarize(lat[name], took[name], concurrency) for name in targets}


def _added(results: dict[str, dict[str, float]], path: str) -> dict[str, float]:
    base = results["direct"]
    return {f"added_{q}": round(results[path][q] - base[q], 3) for q in ("p50_ms", "p99_ms")}


async def run_bench(
    *, requests_c1: int = 300, requests_c32: int = 3000, warmup: int = 30, rounds: int = 3
) -> dict[str, Any]:
    ports = Ports(free_port(), free_port(), free_port(), free_port())
    with tempfile.TemporaryDirectory(prefix="rationer-bench-http-") as raw, _processes(Path(raw), ports) as procs:
        tmp = Path(raw)
        key = await _api_key(f"127.0.0.1:{ports.ledger}")
        _start_router(tmp, procs)
        await _wait_http(f"http://127.0.0.1:{ports.http}/ready", procs, tmp)
        await _wait_http(f"http://127.0.0.1:{ports.upstream}/v1/models", procs, tmp)
        upstream = f"http://127.0.0.1:{ports.upstream}/v1/chat/completions"
        door = f"http://127.0.0.1:{ports.http}/v1/chat/completions"
        targets: dict[str, Callable[[int], Any]] = {
            "direct": lambda c: http_caller(upstream, "unused", c),
            "http": lambda c: http_caller(door, key, c, model=TIER),
            "grpc": lambda c: grpc_caller(f"127.0.0.1:{ports.router}", key),
            "messages": lambda c: messages_caller(f"http://127.0.0.1:{ports.http}/v1/messages", key, c, model=TIER),
            # For reference: model "auto" also embeds and scores every prompt.
            "http_auto": lambda c: http_caller(door, key, c, model="auto"),
        }
        c1 = await _measure(targets, requests=requests_c1, concurrency=1, warmup=warmup, rounds=rounds)
        c32 = await _measure(targets, requests=requests_c32, concurrency=32, warmup=warmup, rounds=rounds)
    return {
        "bench": "http",
        "path": "cache miss (no_cache), frontier tier = instant local upstream; ledger SQLite, own processes",
        "c1": {**c1, **{f"{p}_vs_direct": _added(c1, p) for p in PATHS}},
        "c32": {**c32, **{f"{p}_vs_direct": _added(c32, p) for p in PATHS}},
        "targets": {"added_p50_ms_c1_max": 12.0, "rps_c32_min": 200.0},
        "meets_targets": {
            "added_p50_ms_c1": c1["http"]["p50_ms"] - c1["direct"]["p50_ms"] <= 12.0,
            "rps_c32": c32["http"]["rps"] >= 200.0,
        },
    }
