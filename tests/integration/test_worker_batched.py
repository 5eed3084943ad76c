"""Continuous batching: one llama.cpp context decodes several sequences at once.

The same worker API and guarantees as one context per slot: exact usage, the
stream equals the unary call, stop sequences, seeds, cancel and deadline free
the sequence, and concurrent streams all finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from rationer.errors import DeadlineExceeded
from services.slm_worker.client import ChatMessage, GenerationParams
from testsupport.slm_worker import SMOLLM2, RunningWorker, running_worker, smollm2_settings

STORY = [ChatMessage("user", "Write a long story about a dragon who collects teapots.")]
GREEDY = GenerationParams(max_tokens=12, temperature=0.0)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def worker() -> AsyncIterator[RunningWorker]:
    async with running_worker(smollm2_settings(slots=4, n_threads=2, n_ctx=2048, batched=True)) as w:
        yield w


async def test_unary_and_stream_agree_with_exact_usage(worker: RunningWorker) -> None:
    out = await worker.client.generate("local-small", STORY, GREEDY)
    assert out.usage.prompt_tokens == await worker.client.count_tokens("local-small", STORY)
    assert (out.finish_reason, out.usage.completion_tokens) == ("length", 12) and out.text.strip()
    chunks = [c async for c in worker.client.generate_stream("local-small", STORY, GREEDY)]
    assert "".join(c.delta for c in chunks[:-1]) == out.text
    assert chunks[-1].final and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12


async def test_concurrent_streams_are_decoded_together_and_all_finish(worker: RunningWorker) -> None:
    prompts = [f"Write a poem about the number {n}." for n in range(4)]

    async def one(text: str) -> tuple[str, int]:
        out = await worker.client.generate("local-small", [ChatMessage("user", text)],
                                           GenerationParams(max_tokens=16, temperature=0.0))  # fmt: skip
        return out.text, out.usage.completion_tokens

    results = await asyncio.gather(*(one(p) for p in prompts))
    assert all(text.strip() and 0 < n <= 16 for text, n in results)
    # Each answer is its own: sequences do not bleed into each other.
    alone = await one(prompts[2])
    assert alone == results[2]


async def test_seed_and_stop_sequences(worker: RunningWorker) -> None:
    seeded = GenerationParams(max_tokens=12, temperature=1.0, top_p=0.9, seed=1234)
    a = await worker.client.generate(SMOLLM2, STORY, seeded)
    b = await worker.client.generate(SMOLLM2, STORY, seeded)
    assert a.text == b.text
    question = [ChatMessage("user", "What is the capital of France? Answer in one short sentence.")]
    plain = await worker.client.generate("local-small", question, GenerationParams(max_tokens=48, temperature=0.0))
    held = await worker.client.generate("local-small", question, GenerationParams(
        max_tokens=48, temperature=0.0, stop=[plain.text[-1] + "QQQ"]))  # fmt: skip
    assert held.text == plain.text


async def test_cancel_and_deadline_free_their_sequence(worker: RunningWorker) -> None:
    pool = worker.worker.model(SMOLLM2).pool
    assert {type(lease.slot).__name__ for lease in pool._leases} == {"BatchedSlot"}
    before = pool.finished.copy()
    got = 0
    async for _chunk in worker.client.generate_stream("local-small", STORY, GenerationParams(max_tokens=200)):
        got += 1
        if got == 2:
            break  # the client goes away mid-stream
    long = [ChatMessage("user", "Summarise: " + "The numbers rose and fell again. " * 200)]
    with pytest.raises(DeadlineExceeded):
        await worker.client.generate("local-small", long, GenerationParams(max_tokens=8), timeout_s=0.2)
    for _ in range(3000):
        if pool.load().busy_slots == 0:
            break
        await asyncio.sleep(0.01)
    stopped = pool.finished - before
    assert stopped["cancelled"] + stopped["deadline"] == 2
    out = await worker.client.generate("local-small", STORY, GREEDY)
    assert out.usage.completion_tokens == 12
