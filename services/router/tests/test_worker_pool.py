"""The worker pool's choice and health, over fake worker ports (the real ones: tests/integration)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, cast

import pytest

from rationer.errors import DeadlineExceeded, RationerError, Unavailable
from services.router.backends.local import WorkerPool
from services.router.types import GenParams, Message
from services.slm_worker.client import Completion, ModelLoad, Usage, WorkerClient, WorkerModels

MODEL = "smol"
MSGS = (Message("user", "hi"),)


def _load(*, free: int = 1, queue: int = 0, slots: int = 1) -> ModelLoad:
    return ModelLoad(name=MODEL, tier="local-small", context_size=512, quantization="q8", device="cpu",
                     chat_format="gguf", slots=slots, busy_slots=slots - free, free_slots=free, queue_depth=queue,
                     queue_capacity=8, recent_tokens_per_second=0.0)  # fmt: skip


class FakeWorker:
    """A worker port: reports the load it is told to, records the calls it serves."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.load = _load()
        self.probe_error: RationerError | None = None
        self.served = 0
        self.hold: asyncio.Event | None = None  # set: calls wait for it (to keep them in flight)

    async def list_models(self, *, timeout_s: float | None = None) -> WorkerModels:
        if self.probe_error is not None:
            raise self.probe_error
        return WorkerModels(self.address, [self.load])

    async def generate(self, model: str, messages: Any, params: Any = None, **kw: Any) -> Completion:
        self.served += 1
        if self.hold is not None:
            await self.hold.wait()
        return Completion("ok", Usage(1, 1, 2), "stop", model, 0.0, 0.0)

    async def close(self) -> None:
        pass


async def _pool(n: int, **kw: Any) -> tuple[WorkerPool, list[FakeWorker]]:
    fakes = {f"w{i}:1": FakeWorker(f"w{i}:1") for i in range(n)}
    pool = WorkerPool(list(fakes), client_factory=lambda addr, _token: cast(WorkerClient, fakes[addr]), **kw)
    await pool.refresh()
    return pool, list(fakes.values())


async def _call(pool: WorkerPool) -> None:
    await pool.complete(MODEL, MSGS, GenParams(max_tokens=4), None)


async def test_a_call_goes_to_the_worker_with_the_shortest_queue() -> None:
    pool, (a, b, c) = await _pool(3)
    a.load, b.load, c.load = _load(free=0, queue=3), _load(free=0, queue=0), _load(free=0, queue=1)
    await pool.refresh()
    for _ in range(3):
        await _call(pool)
    assert (a.served, b.served, c.served) == (0, 3, 0)


async def test_free_slots_count_as_spare_capacity_before_queue_depth() -> None:
    pool, (a, b) = await _pool(2)
    a.load, b.load = _load(free=2, queue=0, slots=2), _load(free=1, queue=0, slots=2)
    await pool.refresh()
    await _call(pool)
    assert (a.served, b.served) == (1, 0)


async def test_calls_in_flight_count_against_the_last_reported_load() -> None:
    pool, (a, b) = await _pool(2)
    a.load, b.load = _load(free=2, slots=2), _load(free=1, slots=2)
    await pool.refresh()  # what they report; nothing refreshes it during the burst
    a.hold = b.hold = asyncio.Event()
    calls = []
    for _ in range(3):
        calls.append(asyncio.ensure_future(_call(pool)))
        await asyncio.sleep(0.01)
    # a (2 spare), then b (1 spare each, fewer in flight), then a (1 spare against 0): not all three to a.
    assert (a.served, b.served) == (2, 1)
    a.hold.set()
    await asyncio.gather(*calls)


async def test_a_call_that_ended_since_the_last_report_frees_its_slot() -> None:
    pool, (a, b) = await _pool(2)
    a.load, b.load = _load(free=3, slots=3), _load(free=0, slots=2)
    await pool.refresh()
    a.hold = asyncio.Event()
    calls = [asyncio.ensure_future(_call(pool)) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert (a.served, b.served) == (2, 0)
    a.load, b.load = _load(free=1, slots=3), _load(free=2, slots=2)  # reported with A's two calls running
    await pool.refresh()
    a.hold.set()
    await asyncio.gather(*calls)  # both end before the next report
    await _call(pool)
    # A has 3 free now, B 2. Taking the report's 1 free slot at face value (it counted the two calls
    # that have ended since) would send this call to B.
    assert (a.served, b.served) == (3, 0)


async def test_equally_idle_workers_take_turns() -> None:
    pool, fakes = await _pool(3)
    for _ in range(30):
        await _call(pool)
    assert Counter(f.served for f in fakes) == Counter({10: 3})


async def test_an_unreachable_worker_is_out_at_the_next_probe() -> None:
    pool, (a, b) = await _pool(2)
    a.probe_error = Unavailable("connection refused")
    await pool.refresh()
    assert [w["up"] for w in pool.snapshot()] == [False, True]
    for _ in range(4):
        await _call(pool)
    assert (a.served, b.served) == (0, 4)


async def test_a_slow_probe_marks_a_worker_down_only_after_the_set_misses() -> None:
    pool, (a, _b) = await _pool(2, probe_misses=2)
    a.probe_error = DeadlineExceeded("ListModels timed out")
    await pool.refresh()
    assert pool.snapshot()[0]["up"] is True  # one miss: a busy worker stays in rotation
    await pool.refresh()
    assert pool.snapshot()[0]["up"] is False
    a.probe_error = None
    await pool.refresh()
    assert pool.snapshot()[0]["up"] is True  # back at the first good probe


async def test_a_worker_that_refuses_a_call_is_skipped_for_the_next() -> None:
    pool, (a, b) = await _pool(2)
    b.load = _load(free=0, queue=0)  # a is preferred
    await pool.refresh()

    async def refuse(*args: Any, **kw: Any) -> Completion:
        raise Unavailable("connection reset")

    a.generate = refuse  # type: ignore[method-assign]
    await _call(pool)  # fails over to b within the call
    assert b.served == 1 and pool.snapshot()[0]["up"] is False


async def test_no_live_worker_is_unavailable() -> None:
    pool, (a,) = await _pool(1)
    a.probe_error = Unavailable("gone")
    await pool.refresh()
    with pytest.raises(Unavailable, match="no local worker serves 'smol'"):
        await _call(pool)
