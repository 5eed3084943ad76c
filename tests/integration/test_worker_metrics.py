"""The worker's Prometheus load gauges, read from a real warmed worker."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from rationer.api.common.v1 import common_pb2
from services.slm_worker.metrics import WorkerLoadCollector
from testsupport.slm_worker import running_worker, smollm2_settings


async def test_load_gauges_follow_busy_slots() -> None:
    async with running_worker(smollm2_settings(slots=1)) as w:
        registry = CollectorRegistry()
        registry.register(WorkerLoadCollector(w.worker))
        idle = generate_latest(registry).decode()
        assert 'rationer_worker_free_slots{model="smollm2-135m-instruct",tier="local-small"} 1.0' in idle
        assert 'rationer_worker_busy_slots{model="smollm2-135m-instruct",tier="local-small"} 0.0' in idle

        msgs = [common_pb2.ChatMessage(role="user", content="Count slowly from one to fifty.")]
        from rationer.api.worker.v1 import worker_pb2, worker_pb2_grpc
        from rationer.platform.client import internal_channel

        async with internal_channel(w.target, w.service_token) as ch:
            stub = worker_pb2_grpc.WorkerServiceStub(ch)
            call = stub.GenerateStream(
                worker_pb2.GenerateRequest(model="local-small", messages=msgs,
                                           params=common_pb2.GenerationParams(max_tokens=64))
            )  # fmt: skip
            await call.read()  # first token: the slot is now busy
            busy = generate_latest(registry).decode()
            call.cancel()
            await asyncio.sleep(0)
        assert 'rationer_worker_busy_slots{model="smollm2-135m-instruct",tier="local-small"} 1.0' in busy


async def test_queue_depth_and_deferred_requests_are_exported() -> None:
    """The autoscaling signals (deploy/k8s): waiting calls now, calls turned away so far."""
    from rationer.errors import ResourceExhausted, Unavailable
    from services.slm_worker.client import ChatMessage, GenerationParams
    from services.slm_worker.metrics import DEFERRED, QUEUE_DEPTH

    story = [ChatMessage("user", "Write a very long story about a lighthouse keeper and a whale.")]
    model = {"model": "smollm2-135m-instruct", "tier": "local-small"}
    async with running_worker(smollm2_settings(slots=1, queue_capacity=1)) as w:
        registry = CollectorRegistry()
        registry.register(WorkerLoadCollector(w.worker))
        value = registry.get_sample_value
        assert value(QUEUE_DEPTH, model) == 0
        assert value("rationer_worker_queue_capacity", model) == 1
        for reason in ("queue_full", "draining"):
            assert value(f"{DEFERRED}_total", {**model, "reason": reason}) == 0

        running = w.client.generate_stream("local-small", story, GenerationParams(max_tokens=400))
        await anext(running)  # holds the only slot
        queued = asyncio.ensure_future(w.client.generate("local-small", story, GenerationParams(max_tokens=2)))
        for _ in range(2000):  # polls state, not time
            if w.worker.model("local-small").pool.load().queue_depth == 1:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(ResourceExhausted):
            await w.client.generate("local-small", story, GenerationParams(max_tokens=2))
        assert value(QUEUE_DEPTH, model) == 1
        assert value(f"{DEFERRED}_total", {**model, "reason": "queue_full"}) == 1

        w.worker.drain()
        with pytest.raises(Unavailable):
            await w.client.generate("local-small", story, GenerationParams(max_tokens=2))
        await running.aclose()
        await queued
        assert value(f"{DEFERRED}_total", {**model, "reason": "draining"}) == 1
        assert value(f"{DEFERRED}_total", {**model, "reason": "queue_full"}) == 1
