"""``rationer bench router``: the gateway's own overhead on each path.

Upstream, ledger (SQLite), cache and router run as their own processes, as
``rationer serve`` runs them; the only tier is an instant OpenAI-compatible
upstream, so almost all of a request's time is the gateway's. Overhead is
measured per request as end-to-end latency minus the model time the router
reports for that same request (``RouteInfo.model_ms``), and broken down by
the stage timings the router returns (``RouteInfo.stage_ms``).

Paths: cache miss (a fresh prompt each time, model ``auto``: embed, cache
lookup, classify, headroom, Authorize, model, Commit, store); exact hit (a
stored prompt repeated); semantic hit (fow-cache paraphrases of stored
prompts that the cache accepts). Each at concurrency 1 and 32.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from bench.router_http import ADMIN_TOKEN, MODEL, SERVICE_TOKEN, UPSTREAM_MAIN, _api_key
from rationer.client import AsyncClient, Route
from rationer.platform.net import free_port
from testsupport.processes import stop_processes

STAGES = ("auth", "embed", "cache", "headroom", "classify", "authorize", "settle")


def _config(tmp: Path, ports: dict[str, int]) -> dict[str, Any]:
    log = {"format": "json", "level": "WARNING"}
    return {
        "ledger": {"listen": f"127.0.0.1:{ports['ledger']}", "sqlite_path": str(tmp / "ledger.sqlite3"),
                   "admin_token": ADMIN_TOKEN, "service_token": SERVICE_TOKEN, "logging": log},
        "cache": {"listen": f"127.0.0.1:{ports['cache']}", "data_dir": str(tmp / "cache"), "logging": log,
                  "service_token": SERVICE_TOKEN},
        "router": {"listen": f"127.0.0.1:{ports['router']}", "ledger_address": f"127.0.0.1:{ports['ledger']}",
                   "cache_address": f"127.0.0.1:{ports['cache']}", "worker_addresses": [], "logging": log,
                   "service_token": SERVICE_TOKEN,
                   "settlement_journal": str(tmp / "router-settlements.sqlite3"), "answer_before_commit": True,
                   "tiers": [{"name": "frontier", "kind": "frontier", "rank": 0, "model": MODEL,
                              "base_url": f"http://127.0.0.1:{ports['upstream']}/v1", "max_retries": 0}]},
    }  # fmt: skip


@contextlib.contextmanager
def _processes(tmp: Path, ports: dict[str, int]) -> Iterator[None]:
    cfg = tmp / "bench.toml"
    cfg.write_text(tomli_w.dumps(_config(tmp, ports)))
    serve = [sys.executable, "-m", "rationer.cli.main", "serve"]
    cmds = {
        "upstream": [sys.executable, "-c", f"{UPSTREAM_MAIN}({ports['upstream']})"],
        "ledger": [*serve, "ledger", "--config", str(cfg)],
        "cache": [*serve, "cache", "--config", str(cfg)],
    }
    procs = [
        subprocess.Popen(cmd, stdout=(tmp / f"{name}.log").open("wb"), stderr=subprocess.STDOUT)
        for name, cmd in cmds.items()
    ]
    try:
        yield
    finally:
        stop_processes(procs)


class Driver:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def one(self, text: str) -> tuple[float, Route]:
        t = time.perf_counter()
        answer = await self.client.complete(text, max_tokens=16, temperature=0.0, timeout=30)
        return (time.perf_counter() - t) * 1000, answer.route

    async def run(self, texts: list[str], concurrency: int) -> dict[str, Any]:
        results: list[tuple[float, Route]] = []
        queue = iter(texts)

        async def worker() -> None:
            for text in queue:
                results.append(await self.one(text))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return _summary(results, time.perf_counter() - started, concurrency)


def _summary(results: list[tuple[float, Route]], elapsed: float, concurrency: int) -> dict[str, Any]:
    e2e = np.array([r[0] for r in results])
    overhead = np.array([r[0] - r[1].model_ms for r in results])
    hits = sum(r[1].cache_hit for r in results)
    stages = {s: round(float(np.median([r[1].stage_ms.get(s, 0.0) for r in results])), 3) for s in STAGES}
    return {
        "requests": len(results), "concurrency": concurrency, "rps": round(len(results) / elapsed, 1),
        "cache_hit_share": round(hits / len(results), 3),
        "e2e_p50_ms": round(float(np.percentile(e2e, 50)), 3),
        "overhead_p50_ms": round(float(np.percentile(overhead, 50)), 3),
        "overhead_p99_ms": round(float(np.percentile(overhead, 99)), 3),
        "model_p50_ms": round(float(np.median([r[1].model_ms for r in results])), 3),
        "stage_p50_ms": stages,
    }  # fmt: skip


def _paraphrases(limit: int) -> list[tuple[str, str]]:
    from fow_cache.data import load_questions

    pairs = [(q["a"], q["b"]) for q in load_questions() if q.get("category") in ("paraphrase", "near_repeat")]
    return pairs[:limit]


async def _semantic_pairs(driver: Driver, n: int) -> list[str]:
    """Store each pair's first prompt, keep second prompts that hit semantically."""
    accepted: list[str] = []
    # All of them: at its default bound the cache's verifier serves mostly
    # near repeats, which come after the paraphrases in fow-cache's order.
    pairs = _paraphrases(1000)
    for a, _b in pairs:
        await driver.one(a)
    await asyncio.sleep(1.0)  # stores happen off the response path
    for _a, b in pairs:
        _, route = await driver.one(b)
        if route.cache_hit and route.stage_ms.get("embed", 0.0) > 0.0:  # semantic, not an exact repeat
            accepted.append(b)
        if len(accepted) >= n:
            break
    return accepted


async def run_bench(*, requests: int = 200, concurrencies: tuple[int, ...] = (1, 32)) -> dict[str, Any]:
    ports = {name: free_port() for name in ("upstream", "ledger", "cache", "router")}
    with tempfile.TemporaryDirectory(prefix="rationer-bench-router-") as raw, _processes(Path(raw), ports):
        tmp = Path(raw)
        from rationer.up import wait_serving

        key = await _api_key(f"127.0.0.1:{ports['ledger']}")
        await wait_serving(f"127.0.0.1:{ports['cache']}", 120)
        cmd = [sys.executable, "-m", "rationer.cli.main", "serve", "router", "--config", str(tmp / "bench.toml")]
        router = subprocess.Popen(cmd, stdout=(tmp / "router.log").open("wb"), stderr=subprocess.STDOUT)
        try:
            await wait_serving(f"127.0.0.1:{ports['router']}", 120)
            async with AsyncClient(f"127.0.0.1:{ports['router']}", key) as client:
                return await _paths(Driver(client), requests, concurrencies)
        finally:
            await asyncio.to_thread(stop_processes, [router])


async def _paths(driver: Driver, requests: int, concurrencies: tuple[int, ...]) -> dict[str, Any]:
    stored = [f"Stored question {i}: what is a good name for a pet hamster?" for i in range(20)]
    for text in stored:
        await driver.one(text)
    semantic = await _semantic_pairs(driver, 20)
    await asyncio.sleep(1.0)
    out: dict[str, Any] = {}
    for c in concurrencies:
        miss = [f"Fresh question {c}-{i}: list {i % 7 + 2} uses for a paperclip." for i in range(requests)]
        out[f"c{c}"] = {
            "miss": await driver.run(miss, c),
            "exact_hit": await driver.run([stored[i % len(stored)] for i in range(requests)], c),
            "semantic_hit": await driver.run([semantic[i % len(semantic)] for i in range(requests)], c)
            if semantic else {},
        }
    c1 = out.get("c1", {})
    return {
        "bench": "router",
        "method": "overhead = client end-to-end latency - RouteInfo.model_ms, per request; stages from stage_ms",
        **out,
        "semantic_pairs": len(semantic),
        "targets": {"miss_overhead_p50_ms_max": 12.0, "exact_hit_p50_ms_max": 3.0},
        "meets_targets": {
            "miss_overhead_p50": bool(c1) and c1["miss"]["overhead_p50_ms"] <= 12.0,
            "exact_hit_p50": bool(c1) and c1["exact_hit"]["overhead_p50_ms"] <= 3.0,
        },
    }
