"""The worker's Prometheus load gauges, read from a real warmed worker."""

from __future__ import annotations

import asyncio

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
