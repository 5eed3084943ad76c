"""``rationer bench worker-spread``: the router's worker choice against round robin, same run.

Two real ``rationer serve slm-worker`` processes (SmolLM2, one thread per
slot) of unequal size, 2 slots and 1, as a pool of mixed machines is. The
router's ``WorkerPool`` sends ``requests`` short completions at
``concurrency`` (default: the pool's 3 slots) with its normal background
refresh, once choosing as the router does (most spare capacity: reported
free slots minus queue depth minus calls in flight) and once in plain round
robin over the live workers (the baseline: what a connection-level balancer
or DNS alone would do). The two alternate in back-to-back pairs (in turn
first and second); each ratio
is the median of the per-pair ratios, so drift from other load on a shared
host hits both sides of a pair alike. Reported: requests/s, p50 and p99
latency, and each worker's share of the calls.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from services.router.backends.local import WorkerPool
from services.router.backends.workers import WorkerState
from services.router.types import GenParams, Message
from testsupport.platform import SERVICE_TOKEN
from testsupport.worker_process import MODEL, worker_processes

SLOTS = (2, 1)
PROMPTS = ["Name a fruit.", "Say hello.", "Name a colour.", "Count to three."]


class _RecordingPool(WorkerPool):
    """The router's choice, noting which worker each call went to first."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.first: Counter[str] = Counter()

    def _ranked(self, model: str) -> list[WorkerState]:
        ranked = super()._ranked(model)
        self.first[ranked[0].address] += 1
        return ranked


class _RoundRobinPool(_RecordingPool):
    """The baseline: live workers in turn, whatever their load (fail-over kept)."""

    def _ranked(self, model: str) -> list[WorkerState]:
        live = [w for w in self._workers if w.up and w.serves(model) is not None]
        self._turn += 1
        start = self._turn % len(live)
        ranked = live[start:] + live[:start]
        self.first[ranked[0].address] += 1
        return ranked


async def _run(pool: _RecordingPool, requests: int, concurrency: int, max_tokens: int) -> dict[str, Any]:
    latencies: list[float] = []
    todo = iter(range(requests))

    async def client() -> None:
        for i in todo:
            started = time.perf_counter()
            msgs = (Message("user", PROMPTS[i % len(PROMPTS)]),)
            await pool.complete(MODEL, msgs, GenParams(max_tokens=max_tokens, temperature=0.0), None)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": requests / elapsed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


async def _policy(cls: type[_RecordingPool], targets: list[str], requests: int, concurrency: int,
                  max_tokens: int) -> tuple[dict[str, Any], Counter[str]]:  # fmt: skip
    pool = cls(targets, refresh_s=1.0, service_token=SERVICE_TOKEN)
    await pool.start()
    try:
        return await _run(pool, requests, concurrency, max_tokens), pool.first
    finally:
        await pool.close()


def _summary(runs: list[dict[str, Any]], shares: Counter[str], targets: list[str]) -> dict[str, Any]:
    total = sum(shares.values()) or 1
    return {
        "rps": round(statistics.median(r["rps"] for r in runs), 2),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 1),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 1),
        "share_by_slots": {str(n): round(shares[t] / total, 3) for n, t in zip(SLOTS, targets, strict=True)},
    }


async def run_bench(requests: int = 30, concurrency: int = 3, rounds: int = 3, max_tokens: int = 16) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rationer-bench-spread-") as tmp:
        async with worker_processes(Path(tmp), SLOTS) as workers:
            targets = [w.target for w in workers]
            await _policy(_RecordingPool, targets, 6, concurrency, max_tokens)  # warm-up, unmeasured
            ours: list[dict[str, Any]] = []
            base: list[dict[str, Any]] = []
            ours_share: Counter[str] = Counter()
            base_share: Counter[str] = Counter()
            for r in range(rounds):
                # Each pair in the other order from the last, so a trend in the host's load favours neither.
                for cls in (_RecordingPool, _RoundRobinPool)[:: 1 if r % 2 == 0 else -1]:
                    run, share = await _policy(cls, targets, requests, concurrency, max_tokens)
                    (base if cls is _RoundRobinPool else ours).append(run)
                    (base_share if cls is _RoundRobinPool else ours_share).update(share)
    pairs = list(zip(ours, base, strict=True))
    return {
        "workers_slots": list(SLOTS), "requests": requests, "concurrency": concurrency, "rounds": rounds,
        "max_tokens": max_tokens,
        "least_loaded": _summary(ours, ours_share, targets),
        "round_robin": _summary(base, base_share, targets),
        "rps_ratio": round(statistics.median(o["rps"] / b["rps"] for o, b in pairs), 3),
        "p99_ratio": round(statistics.median(o["p99_ms"] / b["p99_ms"] for o, b in pairs), 3),
    }  # fmt: skip
