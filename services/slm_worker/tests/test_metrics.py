"""The load collector on a real SlotPool whose one slot is a stand-in (no model).

The same gauges on a real warmed model: tests/integration/test_worker_metrics.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from rationer.errors import ResourceExhausted, Unavailable
from services.slm_worker.engine import GenerationOutcome, GenerationRequest, Slot
from services.slm_worker.metrics import DEFERRED, DEFERRED_REASONS, QUEUE_DEPTH, WorkerLoadCollector
from services.slm_worker.pool import SlotPool
from services.slm_worker.settings import ModelEntry
from services.slm_worker.worker import LoadedModel, Worker


class _HeldSlot:
    """Generates nothing until cancelled: holds its slot as long as the test wants."""

    index = 0

    def run(self, req: GenerationRequest, emit: Callable[[str, int], None], cancel: threading.Event) -> Any:
        emit("x", 1)
        cancel.wait(10)
        return GenerationOutcome("cancelled", len(req.prompt_tokens), 1, 1.0, 1.0)

    def close(self) -> None:
        pass


def _worker(pool: SlotPool) -> Worker:
    entry = ModelEntry(name="m", tier="local-small", path="/nowhere.gguf", queue_capacity=0)
    tokenizer = SimpleNamespace(format=SimpleNamespace(name="gguf"))
    return Worker([LoadedModel(entry, cast(Any, tokenizer), pool, "Q4_1")])


async def test_deferred_requests_count_each_refusal_by_reason() -> None:
    pool = SlotPool("m", [cast(Slot, _HeldSlot())], queue_capacity=0)
    registry = CollectorRegistry()
    registry.register(WorkerLoadCollector(_worker(pool)))
    key = {"model": "m", "tier": "local-small"}
    assert registry.get_sample_value(QUEUE_DEPTH, key) == 0
    for reason in DEFERRED_REASONS:  # every series exists before the first refusal
        assert registry.get_sample_value(f"{DEFERRED}_total", {**key, "reason": reason}) == 0
    before = generate_latest(registry).decode()
    assert f"# TYPE {DEFERRED}_total counter" in before or f"# TYPE {DEFERRED} counter" in before

    running = pool.generate(GenerationRequest(prompt_tokens=[1, 2], max_tokens=4))
    await anext(running)  # the only slot is taken, and the queue holds none
    with pytest.raises(ResourceExhausted):
        await anext(pool.generate(GenerationRequest(prompt_tokens=[1], max_tokens=1)))
    pool.drain()
    with pytest.raises(Unavailable):
        await anext(pool.generate(GenerationRequest(prompt_tokens=[1], max_tokens=1)))
    await running.aclose()

    assert registry.get_sample_value(f"{DEFERRED}_total", {**key, "reason": "queue_full"}) == 1
    assert registry.get_sample_value(f"{DEFERRED}_total", {**key, "reason": "draining"}) == 1
    assert registry.get_sample_value("rationer_worker_queue_capacity", key) == 0
    pool.close()
