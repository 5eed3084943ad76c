"""Client-side load balancing over the slm_worker pool.

Every ``refresh_s`` the pool asks each worker for ``ListModels`` (models and
live load). A call goes to the worker with the most spare capacity for the
model (free slots minus queue depth minus the calls this router already has
in flight there, so bursts between refreshes spread out). A worker that
answers RESOURCE_EXHAUSTED or UNAVAILABLE is skipped for that call and the
next one is tried; UNAVAILABLE also marks it down until the next refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import grpc
import structlog

from rationer.api.common.v1 import common_pb2
from rationer.api.worker.v1 import worker_pb2, worker_pb2_grpc
from rationer.errors import DeadlineExceeded, RationerError, ResourceExhausted, Unavailable
from rationer.platform.client import call_metadata, domain_error, internal_channel
from rationer.platform.convert import FINISH_FROM_PROTO, generation_params
from services.router.model_types import Completion, Delta, GenParams, Message

log = structlog.get_logger(__name__)



@dataclass
class _Worker:
    address: str
    stub: worker_pb2_grpc.WorkerServiceAsyncStub
    channel: grpc.aio.Channel
    up: bool = False
    models: dict[str, worker_pb2.ModelInfo] = field(default_factory=dict)
    inflight: int = 0

    def serves(self, model: str) -> worker_pb2.ModelInfo | None:
        info = self.models.get(model)
        if info is None:
            info = next((m for m in self.models.values() if m.tier == model), None)
        return info

    def spare(self, model: str) -> float:
        info = self.serves(model)
        if info is None:
            return float("-inf")
        return info.free_slots - info.queue_depth - self.inflight


def _request(model: str, messages: Sequence[Message], params: GenParams) -> worker_pb2.GenerateRequest:
    return worker_pb2.GenerateRequest(
        model=model,
        messages=[common_pb2.ChatMessage(role=m.role, content=m.content) for m in messages],
        params=generation_params(params.max_tokens, params.stop, params.temperature, params.top_p, params.seed),
    )


def _timeout(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("deadline passed before a local worker could start")
    return left


async def _expand(address: str) -> list[str]:
    """``dns:host:port`` -> one ``ip:port`` per A/AAAA record (compose --scale)."""
    if not address.startswith("dns:"):
        return [address]
    host, _, port = address[4:].rpartition(":")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as exc:
        log.warning("worker discovery failed", address=address, error=str(exc))
        return []
    ips = sorted({str(info[4][0]) for info in infos})
    return [f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip in ips]


class WorkerPool:
    def __init__(self, addresses: Sequence[str], refresh_s: float = 1.0, *, service_token: str = "") -> None:
        self._configured = list(addresses)
        self._service_token = service_token
        self._workers: list[_Worker] = []
        self._refresh_s = refresh_s
        self._task: asyncio.Task[None] | None = None

    async def _discover(self) -> None:
        wanted: list[str] = []
        for address in self._configured:
            wanted += await _expand(address)
        known = {w.address: w for w in self._workers}
        workers = []
        for address in wanted:
            w = known.pop(address, None)
            if w is None:
                channel = internal_channel(address, self._service_token)
                w = _Worker(address, worker_pb2_grpc.WorkerServiceStub(channel), channel)
            workers.append(w)
        self._workers = workers
        for gone in known.values():
            await gone.channel.close(None)

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for w in self._workers:
            await w.channel.close(None)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            await self.refresh()

    async def refresh(self) -> None:
        await self._discover()
        await asyncio.gather(*(self._refresh_one(w) for w in self._workers))

    async def _refresh_one(self, w: _Worker) -> None:
        try:
            resp = await w.stub.ListModels(worker_pb2.ListModelsRequest(), timeout=1.0)
        except grpc.aio.AioRpcError as exc:
            if w.up:
                log.warning("worker down", worker=w.address, code=exc.code().name)
            w.up = False
            return
        w.models = {m.name: m for m in resp.models}
        w.up = True

    def healthy(self, model: str) -> bool:
        return any(w.up and w.serves(model) is not None for w in self._workers)

    def snapshot(self) -> list[dict[str, object]]:
        return [
            {"address": w.address, "up": w.up, "inflight": w.inflight, "models": sorted(w.models)}
            for w in self._workers
        ]

    def _ranked(self, model: str) -> list[_Worker]:
        live = [w for w in self._workers if w.up and w.serves(model) is not None]
        if not live:
            raise Unavailable(f"no local worker serves {model!r} right now")
        return sorted(live, key=lambda w: w.spare(model), reverse=True)

    def _skip(self, w: _Worker, err: RationerError) -> None:
        if isinstance(err, Unavailable):
            w.up = False
        log.info("worker refused; trying the next", worker=w.address, error=err.message)

    async def complete(
        self, model: str, messages: Sequence[Message], params: GenParams, deadline: float | None
    ) -> Completion:
        last: RationerError = Unavailable(f"no local worker serves {model!r}")
        for w in self._ranked(model):
            w.inflight += 1
            started = time.perf_counter()
            try:
                resp = await w.stub.Generate(
                    _request(model, messages, params), timeout=_timeout(deadline), metadata=call_metadata()
                )
            except grpc.aio.AioRpcError as exc:
                err = domain_error(exc, service=f"worker {w.address}")
                if not isinstance(err, ResourceExhausted | Unavailable):
                    raise err from exc
                self._skip(w, err)
                last = err
                continue
            finally:
                w.inflight -= 1
            return Completion(
                text=resp.text,
                prompt_tokens=resp.usage.prompt_tokens,
                completion_tokens=resp.usage.completion_tokens,
                finish_reason=FINISH_FROM_PROTO.get(resp.finish_reason, "stop"),
                model=resp.model or model,
                # Wall time of the call as the router saw it (queueing on the
                # worker included), measured the same way as frontier calls.
                model_ms=(time.perf_counter() - started) * 1000,
            )
        raise last

    async def count_tokens(self, model: str, messages: Sequence[Message]) -> int | None:
        """A worker's exact prompt count for ``model``, or None when none answers."""
        request = worker_pb2.CountTokensRequest(
            model=model, messages=[common_pb2.ChatMessage(role=m.role, content=m.content) for m in messages]
        )
        for w in [w for w in self._workers if w.up and w.serves(model) is not None]:
            try:
                resp = await w.stub.CountTokens(request, timeout=5.0, metadata=call_metadata())
            except grpc.aio.AioRpcError as exc:
                log.warning("CountTokens failed", worker=w.address, code=exc.code().name)
                continue
            return int(resp.tokens)
        return None

    async def stream(
        self, model: str, messages: Sequence[Message], params: GenParams, deadline: float | None
    ) -> AsyncIterator[Delta]:
        last: RationerError = Unavailable(f"no local worker serves {model!r}")
        for w in self._ranked(model):
            started = False
            w.inflight += 1
            call = w.stub.GenerateStream(
                _request(model, messages, params), timeout=_timeout(deadline), metadata=call_metadata()
            )
            try:
                async for chunk in call:
                    started = True
                    if chunk.final:
                        yield Delta(
                            text=chunk.delta,
                            final=True,
                            prompt_tokens=chunk.usage.prompt_tokens,
                            completion_tokens=chunk.usage.completion_tokens,
                            finish_reason=FINISH_FROM_PROTO.get(chunk.finish_reason, "stop"),
                            model=chunk.model or model,
                        )
                        return
                    # Running usage: what a caller that hangs up here is billed.
                    so_far = chunk.usage_so_far
                    yield Delta(
                        text=chunk.delta,
                        prompt_tokens=so_far.prompt_tokens,
                        completion_tokens=so_far.completion_tokens,
                        usage_exact=chunk.HasField("usage_so_far"),
                    )
                raise Unavailable(f"worker {w.address} closed the stream without a final message")
            except grpc.aio.AioRpcError as exc:
                err = domain_error(exc, service=f"worker {w.address}")
                # Once text has flowed, another worker cannot continue it; the
                # router core decides (it may restart on another tier).
                if started or not isinstance(err, ResourceExhausted | Unavailable):
                    raise err from exc
                self._skip(w, err)
                last = err
            finally:
                w.inflight -= 1
                call.cancel()
        raise last
