"""The router's worker pool against real ``rationer serve slm-worker`` processes (SmolLM2) on loopback.

- Load spreads by what each worker reports (free slots, queue depth) and by
  the router's own calls in flight there.
- A worker killed with SIGKILL mid-call: its stream fails cleanly
  (UNAVAILABLE, text already sent cannot move), a call it was running fails
  over to the other worker, and the pool stops sending to it at once.
- The leave-detection bound (docs/deploy.md, "Workers"), counted in probes,
  not seconds: a dead worker is out after one probe (one ``worker_refresh_s``),
  a hung one (SIGSTOP) after ``worker_probe_misses`` probes, and back after
  one good probe.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from rationer.errors import Unavailable
from services.router.backends.local import WorkerPool
from services.router.backends.workers import expand
from services.router.types import Delta, GenParams, Message
from services.slm_worker.client import WorkerClient
from testsupport.platform import SERVICE_TOKEN
from testsupport.worker_process import worker_processes

LONG = (Message("user", "Count from 1 to 500, separated by commas."),)
GEN = GenParams(max_tokens=300, temperature=0.0)


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[list[tuple[subprocess.Popen[bytes], str]]]:
    # A: two slots, B: one, so where each call goes is decided by load, not by chance.
    async with worker_processes(tmp_path, slots=[2, 1]) as started:
        yield [(w.proc, w.target) for w in started]


def _up(pool: WorkerPool) -> list[bool]:
    return [bool(w["up"]) for w in pool.snapshot()]


def _inflight(pool: WorkerPool) -> list[int]:
    return [int(str(w["inflight"])) for w in pool.snapshot()]


async def _busy(target: str) -> int:
    async with WorkerClient(target, service_token=SERVICE_TOKEN) as client:
        return (await client.list_models()).models[0].busy_slots


async def _until_busy(target: str, slots: int) -> None:
    for _ in range(500):
        if await _busy(target) >= slots:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{target} never had {slots} busy slots")


async def test_load_spreads_and_a_killed_worker_fails_over_cleanly(
    workers: list[tuple[subprocess.Popen[bytes], str]],
) -> None:
    (proc_a, a), (_proc_b, b) = workers
    # No background refresh: the test runs each probe itself, so it counts them.
    pool = WorkerPool([a, b], service_token=SERVICE_TOKEN)
    await pool.refresh()
    assert _up(pool) == [True, True]
    s1 = pool.stream("smol", LONG, GEN, None)
    s2 = pool.stream("smol", LONG, GEN, None)
    assert isinstance(await anext(s1), Delta) and isinstance(await anext(s2), Delta)
    # A's two free slots beat B's one; then B (one spare each, fewer calls in flight).
    assert _inflight(pool) == [1, 1]
    c1 = asyncio.ensure_future(pool.complete("smol", LONG, GenParams(max_tokens=64, temperature=0.0), None))
    await _until_busy(a, 2)  # A's second slot runs c1: its last report said 2 free, 1 in flight
    assert _inflight(pool) == [2, 1]

    proc_a.kill()  # SIGKILL mid-call
    with pytest.raises(Unavailable):
        async for _ in s1:  # text already flowed from A: the stream fails, cleanly
            pass
    await cast(AsyncGenerator[Delta, None], s2).aclose()  # frees B's slot for the call that fails over
    out = await asyncio.wait_for(c1, 120)
    assert out.completion_tokens > 0  # c1 died with A and was served by B within the same call
    assert _up(pool) == [False, True]  # marked down by that call, before any probe
    await pool.refresh()
    assert _up(pool) == [False, True]
    for _ in range(3):
        await pool.complete("smol", LONG, GenParams(max_tokens=2), None)
    assert _inflight(pool) == [0, 0]
    await pool.close()


async def test_a_dead_worker_is_out_after_one_probe_a_hung_one_after_the_set_misses(
    workers: list[tuple[subprocess.Popen[bytes], str]],
) -> None:
    (proc_a, a), (proc_b, b) = workers
    pool = WorkerPool([a, b], service_token=SERVICE_TOKEN, probe_misses=2)
    await pool.refresh()
    assert _up(pool) == [True, True]
    proc_b.send_signal(signal.SIGSTOP)  # hung: connected, never answers
    try:
        await pool.refresh()  # one probe times out: still in rotation (a busy worker is slow, not gone)
        assert _up(pool) == [True, True]
        await pool.refresh()
        assert _up(pool) == [True, False]
    finally:
        proc_b.send_signal(signal.SIGCONT)
    await pool.refresh()
    assert _up(pool) == [True, True]  # back at its first good probe

    proc_a.kill()  # idle when it dies: no call has noticed
    assert _up(pool) == [True, True]
    await pool.refresh()
    assert _up(pool) == [False, True]  # one probe
    for _ in range(3):
        await pool.complete("smol", LONG, GenParams(max_tokens=2), None)
    proc_b.kill()
    await pool.refresh()
    with pytest.raises(Unavailable, match="no local worker serves 'smol'"):
        await pool.complete("smol", LONG, GenParams(max_tokens=2), None)
    await pool.close()


async def test_dns_addresses_resolve_to_one_worker_per_record() -> None:
    # The system resolver, no fake: localhost is at least 127.0.0.1 (and ::1 where configured).
    assert "127.0.0.1:7403" in await expand("dns:localhost:7403")
    assert await expand("127.0.0.1:7403") == ["127.0.0.1:7403"]  # a static address is itself
    assert await expand("dns:no-such-host.invalid:7403") == []  # logged; the pool keeps its others
