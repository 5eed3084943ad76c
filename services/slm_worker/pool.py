"""N slots of one model behind a bounded wait queue.

Each slot owns a single-thread executor: llama.cpp calls release the GIL, so
slots on threads run in parallel (measured against a process per slot in
docs/slm_worker.md), and a context is never touched by two threads at once.
A slot is handed back only when its thread has really finished, so a
cancelled call can never leave two generations sharing one context.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from rationer.errors import ResourceExhausted, Unavailable
from services.slm_worker.engine import GenerationOutcome, GenerationRequest, Slot, TextPiece
from services.slm_worker.mailbox import LoopWaker, Mailbox

log = structlog.get_logger(__name__)

_RATE_WINDOW = 20  # recent generations that feed recent_tokens_per_second


@dataclass(frozen=True)
class PoolLoad:
    slots: int
    busy_slots: int
    free_slots: int
    queue_depth: int
    queue_capacity: int
    recent_tokens_per_second: float


class _Lease:
    """A slot and the executor that runs it."""

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"slot-{slot.index}")


class SlotPool:
    def __init__(self, name: str, slots: list[Slot], queue_capacity: int) -> None:
        self.name = name
        self._leases = [_Lease(s) for s in slots]
        self._free: list[_Lease] = list(self._leases)
        self._waiters: collections.deque[asyncio.Future[_Lease]] = collections.deque()
        self._capacity = queue_capacity
        self._recent: collections.deque[tuple[int, float]] = collections.deque(maxlen=_RATE_WINDOW)
        self._recent_lock = threading.Lock()
        self._draining = False
        self._waker: LoopWaker | None = None
        # Finish reasons of completed runs, e.g. {"length": 3, "cancelled": 1}.
        self.finished: collections.Counter[str] = collections.Counter()
        # Calls turned away for another worker or tier to take, by reason
        # ("queue_full", "draining"): the autoscaling signal that load has
        # outgrown the replicas (services/slm_worker/metrics.py).
        self.deferred: collections.Counter[str] = collections.Counter()

    # -- slot accounting -------------------------------------------------

    def load(self) -> PoolLoad:
        with self._recent_lock:
            tokens = sum(t for t, _ in self._recent)
            seconds = sum(s for _, s in self._recent)
        busy = len(self._leases) - len(self._free)
        return PoolLoad(
            slots=len(self._leases),
            busy_slots=busy,
            free_slots=len(self._free),
            queue_depth=sum(1 for w in self._waiters if not w.done()),
            queue_capacity=self._capacity,
            recent_tokens_per_second=tokens / seconds if seconds > 0 else 0.0,
        )

    @property
    def draining(self) -> bool:
        return self._draining

    def drain(self) -> None:
        """Refuse new work; queued and running calls still finish."""
        self._draining = True

    async def _acquire(self) -> _Lease:
        if self._draining:
            self.deferred["draining"] += 1
            raise Unavailable(f"worker is draining; send model {self.name!r} requests to another worker")
        if self._free:
            return self._free.pop()
        depth = sum(1 for w in self._waiters if not w.done())
        if depth >= self._capacity:
            self.deferred["queue_full"] += 1
            raise ResourceExhausted(
                f"model {self.name!r}: all {len(self._leases)} slots busy and the queue is full "
                f"({self._capacity} waiting); try another worker or tier",
                limit_id=f"worker-queue:{self.name}",
                retry_after_s=self._retry_after(),
            )
        waiter: asyncio.Future[_Lease] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(waiter.result())  # woken and cancelled in the same tick
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _release(self, lease: _Lease) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(lease)
                return
        self._free.append(lease)

    def _retry_after(self) -> float:
        # A rough hint: one typical generation at the recent speed.
        rate = self.load().recent_tokens_per_second
        return 128 / rate if rate > 0 else 1.0

    def _record(self, outcome: GenerationOutcome) -> None:
        # Tokens after the first over the time they took: one stream's decode speed.
        if outcome.completion_tokens > 1 and outcome.decode_ms > 0:
            with self._recent_lock:
                self._recent.append((outcome.completion_tokens - 1, outcome.decode_ms / 1000.0))

    # -- generation --------------------------------------------------------

    async def generate(self, req: GenerationRequest) -> AsyncGenerator[TextPiece | GenerationOutcome, None]:
        """Yield text pieces, then exactly one GenerationOutcome.

        Closing or cancelling the iterator sets the slot's cancel flag; the
        slot returns to the pool once its thread has stopped.
        """
        lease = await self._acquire()
        box = Mailbox(self._waker_for(asyncio.get_running_loop()))
        cancel = threading.Event()
        prompt_tokens = len(req.prompt_tokens)
        try:
            future = asyncio.get_running_loop().run_in_executor(lease.executor, lease.slot.run, req, box.emit, cancel)
        except BaseException:
            self._release(lease)
            raise
        future.add_done_callback(lambda f: self._finished(lease, f, box))
        try:
            # Everything ready is taken at once: a consumer that falls behind
            # sends one piece for several tokens (services/slm_worker/mailbox.py).
            while (ready := await box.take()) is not None:
                yield TextPiece(ready[0], prompt_tokens, ready[1])
            outcome = future.result()
            yield outcome
        finally:
            cancel.set()

    def _waker_for(self, loop: asyncio.AbstractEventLoop) -> LoopWaker:
        # One per loop, shared by every generation of this pool, so all the
        # sequences of one batched decode step wake the loop once.
        if self._waker is None or self._waker.loop is not loop:
            self._waker = LoopWaker(loop)
        return self._waker

    def _finished(self, lease: _Lease, future: asyncio.Future[GenerationOutcome], box: Mailbox) -> None:
        # Runs on the loop once the slot's thread has returned, so every
        # emit() of that run is already in the mailbox: the consumer sees all
        # deltas before the outcome.
        self._release(lease)
        if not future.cancelled() and future.exception() is None:
            self._record(future.result())
            self.finished[future.result().finish_reason] += 1
        box.close()

    async def run_once(self, fn: Any) -> list[Any]:
        """Run ``fn(slot)`` on every slot's own thread (used for warm-up)."""
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(ls.executor, fn, ls.slot) for ls in self._leases)))

    def close(self) -> None:
        for lease in self._leases:
            lease.executor.shutdown(wait=True)
            lease.slot.close()
