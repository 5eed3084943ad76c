"""Slots, the bounded queue, and cancellation on a real one-slot SmolLM2 worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from rationer.errors import ResourceExhausted
from rationer.platform.client import internal_channel
from services.slm_worker.client import ChatMessage, GenerationParams, StreamChunk, WorkerClient
from testsupport.slm_worker import SMOLLM2, RunningWorker, running_worker, smollm2_settings

STORY = [ChatMessage("user", "Write a very long story about a lighthouse keeper and a whale.")]
LONG = GenerationParams(max_tokens=400, temperature=0.0)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def worker() -> AsyncIterator[RunningWorker]:
    async with running_worker(smollm2_settings(slots=1, queue_capacity=1)) as w:
        yield w


async def _wait_for(w: RunningWorker, *, busy: int, queued: int) -> None:
    # Polls state, not time: the loop ends when the worker reports the load.
    for _ in range(2000):
        m = (await w.client.list_models()).models[0]
        if (m.busy_slots, m.queue_depth) == (busy, queued):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"worker never reached busy={busy} queued={queued}: {m}")


async def test_cancelled_stream_frees_its_slot(worker: RunningWorker) -> None:
    pool = worker.worker.model(SMOLLM2).pool
    before = pool.finished["cancelled"]
    stream = worker.client.generate_stream("local-small", STORY, LONG)
    first = await anext(stream)
    assert first.delta and not first.final
    await stream.aclose()  # cancels the RPC
    await _wait_for(worker, busy=0, queued=0)
    assert pool.finished["cancelled"] == before + 1
    # The freed slot serves the next call.
    out = await worker.client.generate("local-small", STORY, GenerationParams(max_tokens=4))
    assert out.usage.completion_tokens == 4


async def test_client_disconnect_frees_its_slot(worker: RunningWorker) -> None:
    pool = worker.worker.model(SMOLLM2).pool
    before = pool.finished["cancelled"]
    channel = internal_channel(worker.target, worker.service_token)
    client = WorkerClient(channel)
    stream = client.generate_stream("local-small", STORY, LONG)
    await anext(stream)
    await channel.close(None)  # the connection goes away mid-stream
    with pytest.raises(asyncio.CancelledError):  # the closed channel cancels the call locally
        await anext(stream)
    await _wait_for(worker, busy=0, queued=0)
    assert pool.finished["cancelled"] == before + 1


async def test_full_queue_answers_resource_exhausted_at_once(worker: RunningWorker) -> None:
    running = worker.client.generate_stream("local-small", STORY, LONG)
    await anext(running)  # holds the only slot
    queued = asyncio.create_task(worker.client.generate("local-small", STORY, GenerationParams(max_tokens=4)))
    await _wait_for(worker, busy=1, queued=1)
    with pytest.raises(ResourceExhausted, match="queue is full") as info:
        await worker.client.generate("local-small", STORY, GenerationParams(max_tokens=4))
    assert info.value.limit_id == f"worker-queue:{SMOLLM2}"
    assert info.value.retry_after_s is not None and info.value.retry_after_s > 0
    # Freeing the slot lets the queued call through, in order.
    await running.aclose()
    out = await queued
    assert out.usage.completion_tokens == 4
    await _wait_for(worker, busy=0, queued=0)


async def test_queued_call_cancelled_while_waiting_leaves_the_queue(worker: RunningWorker) -> None:
    running = worker.client.generate_stream("local-small", STORY, LONG)
    await anext(running)
    waiting = worker.client.generate_stream("local-small", STORY, GenerationParams(max_tokens=4))
    waiter: asyncio.Future[StreamChunk] = asyncio.ensure_future(anext(waiting))
    await _wait_for(worker, busy=1, queued=1)
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    await waiting.aclose()
    await _wait_for(worker, busy=1, queued=0)
    await running.aclose()
    await _wait_for(worker, busy=0, queued=0)
