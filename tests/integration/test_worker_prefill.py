"""A long prompt is read in chunks, so a cancel or deadline stops it mid-prompt.

llama.cpp reads a prompt in one call that cannot be interrupted; without the
chunking a caller that gave up would keep the slot busy until the whole
prompt had been read (seconds, for a long one on these cores).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from rationer.errors import DeadlineExceeded
from services.slm_worker.client import ChatMessage, GenerationParams
from services.slm_worker.engine import PREFILL_CHUNK
from testsupport.slm_worker import SMOLLM2, RunningWorker, running_worker, smollm2_settings

LONG = [ChatMessage("user", "Summarise this report. " + "The quarterly numbers rose and fell again. " * 150)]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def worker() -> AsyncIterator[RunningWorker]:
    async with running_worker(smollm2_settings(slots=1, n_ctx=2048)) as w:
        yield w


async def _idle(w: RunningWorker) -> None:
    pool = w.worker.model(SMOLLM2).pool
    for _ in range(6000):  # the slot is released when its thread has stopped
        if pool.load().busy_slots == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the slot never came back")


async def test_a_deadline_stops_a_long_prompt_part_way(worker: RunningWorker) -> None:
    prompt_tokens = await worker.client.count_tokens("local-small", LONG)
    assert prompt_tokens > 8 * PREFILL_CHUNK
    pool = worker.worker.model(SMOLLM2).pool
    (slot,) = [lease.slot for lease in pool._leases]
    before = pool.finished.copy()
    with pytest.raises(DeadlineExceeded):
        await worker.client.generate("local-small", LONG, GenerationParams(max_tokens=8), timeout_s=0.3)
    await _idle(worker)
    assert (pool.finished - before)["deadline"] + (pool.finished - before)["cancelled"] == 1
    # The run stopped between chunks: the context holds only part of the prompt.
    assert slot.evaluated_tokens < prompt_tokens - 1
    # The next full run reuses that part and still reads the prompt exactly.
    full = await worker.client.generate("local-small", LONG, GenerationParams(max_tokens=4, temperature=0.0))
    assert full.usage.prompt_tokens == prompt_tokens and full.usage.completion_tokens >= 1
    again = await worker.client.generate("local-small", LONG, GenerationParams(max_tokens=4, temperature=0.0))
    assert again.text == full.text  # a cached prefix changes nothing in the answer
