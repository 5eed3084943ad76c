"""A real SmolLM2 worker on loopback: generation, streaming, sampling controls, counting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from rationer.api.common.v1 import common_pb2
from rationer.api.worker.v1 import worker_pb2
from rationer.errors import DeadlineExceeded, NotFound
from services.slm_worker.client import ChatMessage, GenerationParams, StreamChunk
from services.slm_worker.registry import resolve_model_path
from services.slm_worker.servicer import WorkerRef, WorkerServicer
from testsupport.slm_worker import SMOLLM2, RunningWorker, running_worker, smollm2_settings

STORY = [ChatMessage("user", "Write a long story about a dragon who collects teapots.")]
GREEDY = GenerationParams(max_tokens=12, temperature=0.0)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def worker() -> AsyncIterator[RunningWorker]:
    async with running_worker(smollm2_settings(slots=1, queue_capacity=4)) as w:
        yield w


async def _collect(w: RunningWorker, params: GenerationParams, model: str = "local-small") -> list[StreamChunk]:
    return [c async for c in w.client.generate_stream(model, STORY, params)]


async def test_unary_generation_reports_exact_usage(worker: RunningWorker) -> None:
    out = await worker.client.generate("local-small", STORY, GREEDY)
    prompt_tokens = await worker.client.count_tokens("local-small", STORY)
    assert out.model == SMOLLM2
    assert out.text.strip()
    assert out.usage.prompt_tokens == prompt_tokens
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    # A story prompt does not end within 12 tokens: max_tokens is what stopped it.
    assert (out.finish_reason, out.usage.completion_tokens) == ("length", 12)
    assert out.time_to_first_token_ms > 0 and out.generation_ms > 0


async def test_stream_yields_deltas_then_one_final_chunk(worker: RunningWorker) -> None:
    chunks = await _collect(worker, GREEDY)
    unary = await worker.client.generate("local-small", STORY, GREEDY)
    *deltas, final = chunks
    assert len(deltas) >= 2 and not any(c.final for c in deltas)
    assert final.final and final.delta == "" and final.usage is not None
    assert final.finish_reason == "length" and final.model == SMOLLM2
    assert final.usage.completion_tokens == 12
    # Greedy decoding: the stream and the unary call produce the same text.
    assert "".join(c.delta for c in deltas) == unary.text


async def test_every_delta_carries_the_usage_so_far(worker: RunningWorker) -> None:
    # What a caller that stops reading after any delta is billed (the router
    # commits it when a client hangs up mid-stream).
    *deltas, final = await _collect(worker, GREEDY)
    assert final.usage is not None
    counts = []
    for d in deltas:
        assert d.usage is not None and d.usage.prompt_tokens == final.usage.prompt_tokens
        counts.append(d.usage.completion_tokens)
    assert counts == sorted(counts) and counts[0] >= 1 and counts[-1] <= final.usage.completion_tokens == 12
    assert len(deltas) <= counts[-1]  # each delta holds at least one token's text


async def test_seed_makes_sampling_reproducible(worker: RunningWorker) -> None:
    params = GenerationParams(max_tokens=12, temperature=1.0, top_p=0.9, seed=1234)
    first = await worker.client.generate(SMOLLM2, STORY, params)
    second = await worker.client.generate(SMOLLM2, STORY, params)
    assert first.text == second.text


async def test_stop_sequence_cuts_text_and_reports_stop(worker: RunningWorker) -> None:
    free = await worker.client.generate("local-small", STORY, GenerationParams(max_tokens=16, temperature=0.0))
    words = free.text.split()
    assert len(words) >= 4, free.text
    stop = words[len(words) // 2]
    cut = await worker.client.generate(
        "local-small", STORY, GenerationParams(max_tokens=16, temperature=0.0, stop=[stop])
    )
    assert cut.finish_reason == "stop"
    assert cut.text == free.text[: free.text.index(stop)]
    assert stop not in cut.text
    assert cut.usage.completion_tokens < free.usage.completion_tokens


async def test_count_tokens_matches_bare_llama_cpp_chat_completion(worker: RunningWorker) -> None:
    from llama_cpp import Llama

    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "Name three colours. Ünïcödé ✓")]
    counted = await worker.client.count_tokens("local-small", messages)
    path = resolve_model_path(worker.worker.model(SMOLLM2).entry)
    bare: Any = Llama(str(path), n_ctx=256, n_threads=1, verbose=False)
    try:
        reply = bare.create_chat_completion([{"role": m.role, "content": m.content} for m in messages], max_tokens=1)
    finally:
        bare.close()
    assert counted == reply["usage"]["prompt_tokens"]
    longer = [*messages, ChatMessage("assistant", "Red."), ChatMessage("user", "More?")]
    assert counted < await worker.client.count_tokens("local-small", longer)


async def test_list_models_reports_metadata_and_load(worker: RunningWorker) -> None:
    await worker.client.generate("local-small", STORY, GenerationParams(max_tokens=4))
    listed = await worker.client.list_models()
    assert listed.worker_id == worker.target
    (m,) = listed.models
    assert (m.name, m.tier, m.quantization, m.device, m.chat_format) == (
        SMOLLM2,
        "local-small",
        "Q4_1",
        "cpu",
        "gguf",
    )
    assert (m.context_size, m.slots, m.busy_slots, m.free_slots, m.queue_depth, m.queue_capacity) == (
        512,
        1,
        0,
        1,
        0,
        4,
    )
    assert m.recent_tokens_per_second > 0


async def test_unknown_model_is_not_found(worker: RunningWorker) -> None:
    with pytest.raises(NotFound, match="'gpt-9' is not served by this worker"):
        await worker.client.generate("gpt-9", STORY, GREEDY)
    with pytest.raises(NotFound):
        await worker.client.count_tokens("frontier", STORY)


async def test_deadline_stops_generation_and_frees_the_slot(worker: RunningWorker) -> None:
    pool = worker.worker.model(SMOLLM2).pool
    before = pool.finished.copy()
    with pytest.raises(DeadlineExceeded):
        await worker.client.generate("local-small", STORY, GenerationParams(max_tokens=400), timeout_s=0.3)
    # The next call gets the only slot, so the deadline-stopped run released it.
    out = await worker.client.generate("local-small", STORY, GenerationParams(max_tokens=4))
    assert out.usage.completion_tokens == 4
    stopped = (pool.finished - before)["deadline"] + (pool.finished - before)["cancelled"]
    assert stopped == 1


class _ServerSideDeadline:
    """A call context whose deadline the server sees but no client timer backs."""

    def time_remaining(self) -> float:
        return 0.3


async def test_server_side_deadline_is_an_error_not_a_partial_reply(worker: RunningWorker) -> None:
    # The server's view of the deadline can expire just before the caller's;
    # a cut reply must not then pass for a whole answer.
    servicer = WorkerServicer(WorkerRef(worker.worker))
    request = worker_pb2.GenerateRequest(
        model="local-small",
        messages=[common_pb2.ChatMessage(role="user", content=STORY[0].content)],
        params=common_pb2.GenerationParams(max_tokens=400),
    )
    with pytest.raises(DeadlineExceeded, match="deadline passed after"):
        await servicer.Generate(request, _ServerSideDeadline())


async def test_text_held_for_a_possible_stop_sequence_is_kept_at_end_of_sequence(worker: RunningWorker) -> None:
    question = [ChatMessage("user", "What is the capital of France? Answer in one short sentence.")]
    plain = await worker.client.generate("local-small", question, GenerationParams(max_tokens=48, temperature=0.0))
    assert plain.finish_reason == "stop" and plain.text  # the model ended the answer itself
    # A stop sequence that starts with the answer's last character: that
    # character is held back until it cannot begin the stop, which at the end
    # of the sequence means it is released, not dropped.
    params = GenerationParams(max_tokens=48, temperature=0.0, stop=[plain.text[-1] + "QQQ"])
    held = await worker.client.generate("local-small", question, params)
    streamed = [c async for c in worker.client.generate_stream("local-small", question, params)]
    assert held.text == plain.text
    assert "".join(c.delta for c in streamed) == plain.text
