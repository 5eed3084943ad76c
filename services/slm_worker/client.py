"""The SLM worker's one gRPC client: the router's worker pool, the benches and the tests use it.

Returns plain dataclasses and raises ``rationer.errors`` classes mapped back
from gRPC status codes (RESOURCE_EXHAUSTED keeps the queue's limit id and
retry-after hint, so the router can move on to another worker or tier).
Each call forwards the request id and principal of the call being served
(``call_metadata``) unless the caller names its own request id.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field

import grpc

from rationer import errors
from rationer.api.common.v1 import common_pb2
from rationer.api.worker.v1 import worker_pb2 as pb
from rationer.api.worker.v1 import worker_pb2_grpc as pb_grpc
from rationer.platform.client import call_metadata, domain_error, internal_channel
from rationer.platform.convert import FINISH_FROM_PROTO, generation_params
from rationer.platform.interceptor import REQUEST_ID_KEY


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 0  # 0 = the model's default
    temperature: float | None = None
    top_p: float | None = None
    stop: Sequence[str] = ()
    seed: int | None = None
    top_k: int | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage
    finish_reason: str  # "stop" | "length" | "cancelled" | "error"
    model: str
    time_to_first_token_ms: float
    generation_ms: float


@dataclass(frozen=True)
class StreamChunk:
    delta: str
    final: bool = False
    usage: Usage | None = None  # on the final chunk: the whole call; on a delta: generated so far
    finish_reason: str | None = None
    model: str = ""


@dataclass(frozen=True)
class ModelLoad:
    name: str
    tier: str
    context_size: int
    quantization: str
    device: str
    chat_format: str
    slots: int
    busy_slots: int
    free_slots: int
    queue_depth: int
    queue_capacity: int
    recent_tokens_per_second: float


@dataclass(frozen=True)
class WorkerModels:
    worker_id: str
    models: list[ModelLoad] = field(default_factory=list)


def map_rpc_error(exc: grpc.aio.AioRpcError, service: str = "slm_worker") -> errors.RationerError:
    """The domain error a gRPC failure stands for (its message starts with ``service``)."""
    return domain_error(exc, service=service)


def _request(
    model: str, messages: Sequence[ChatMessage], params: GenerationParams | None, request_id: str = ""
) -> pb.GenerateRequest:
    p = params or GenerationParams()
    return pb.GenerateRequest(
        model=model,
        messages=[common_pb2.ChatMessage(role=m.role, content=m.content) for m in messages],
        params=generation_params(p.max_tokens, p.stop, p.temperature, p.top_p, p.seed, p.top_k),
        request_id=request_id,
    )


def _model_load(m: pb.ModelInfo) -> ModelLoad:
    return ModelLoad(
        name=m.name, tier=m.tier, context_size=m.context_size, quantization=m.quantization,
        device=m.device, chat_format=m.chat_format, slots=m.slots, busy_slots=m.busy_slots,
        free_slots=m.free_slots, queue_depth=m.queue_depth, queue_capacity=m.queue_capacity,
        recent_tokens_per_second=m.recent_tokens_per_second,
    )  # fmt: skip


def _usage(u: common_pb2.Usage) -> Usage:
    return Usage(u.prompt_tokens, u.completion_tokens, u.total_tokens)


class WorkerClient:
    """One worker's client; share one per worker address (channels are pooled).

    Every RPC needs the deployment's service token (a channel passed in
    brings its own, and stays the caller's to close). ``timeout_s=None``
    sets no deadline of its own (the router passes each call's). ``label``
    starts every error message ("worker 10.0.0.7:50051: ...")."""

    def __init__(self, target: str | grpc.aio.Channel, *, timeout_s: float | None = 60.0, service_token: str = "",
                 label: str = "slm_worker") -> None:  # fmt: skip
        self._own = isinstance(target, str)
        self._channel = internal_channel(target, service_token) if isinstance(target, str) else target
        self._stub = pb_grpc.WorkerServiceStub(self._channel)
        self._timeout = timeout_s
        self._label = label

    async def close(self) -> None:
        if self._own:
            await self._channel.close(None)

    async def __aenter__(self) -> WorkerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _md(self, request_id: str = "") -> tuple[tuple[str, str], ...]:
        md = dict(call_metadata())
        if request_id:
            md[REQUEST_ID_KEY] = request_id
        return tuple(md.items())

    def _error(self, exc: grpc.aio.AioRpcError) -> errors.RationerError:
        return map_rpc_error(exc, self._label)

    async def generate(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        params: GenerationParams | None = None,
        *,
        timeout_s: float | None = None,
        request_id: str = "",
    ) -> Completion:
        try:
            r = await self._stub.Generate(
                _request(model, messages, params, request_id),
                timeout=timeout_s or self._timeout,
                metadata=self._md(request_id),
            )
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None
        return Completion(
            text=r.text,
            usage=_usage(r.usage),
            finish_reason=FINISH_FROM_PROTO.get(r.finish_reason, "error"),
            model=r.model,
            time_to_first_token_ms=r.time_to_first_token_ms,
            generation_ms=r.generation_ms,
        )

    async def generate_stream(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        params: GenerationParams | None = None,
        *,
        timeout_s: float | None = None,
        request_id: str = "",
    ) -> AsyncGenerator[StreamChunk, None]:
        """Deltas, then one chunk with ``final=True``. Breaking out cancels the call."""
        call = self._stub.GenerateStream(
            _request(model, messages, params, request_id),
            timeout=timeout_s or self._timeout,
            metadata=self._md(request_id),
        )
        try:
            async for c in call:
                if c.final:
                    yield StreamChunk(
                        delta=c.delta,
                        final=True,
                        usage=_usage(c.usage),
                        finish_reason=FINISH_FROM_PROTO.get(c.finish_reason, "error"),
                        model=c.model,
                    )
                else:
                    so_far = _usage(c.usage_so_far) if c.HasField("usage_so_far") else None
                    yield StreamChunk(delta=c.delta, usage=so_far)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None
        finally:
            call.cancel()  # no-op once finished; frees the worker's slot if we stopped early

    async def list_models(self, *, timeout_s: float | None = None) -> WorkerModels:
        try:
            r = await self._stub.ListModels(pb.ListModelsRequest(), timeout=timeout_s or self._timeout,
                                            metadata=self._md())  # fmt: skip
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None
        return WorkerModels(worker_id=r.worker_id, models=[_model_load(m) for m in r.models])

    async def count_tokens(self, model: str, messages: Sequence[ChatMessage], *, timeout_s: float | None = None) -> int:
        request = pb.CountTokensRequest(
            model=model, messages=[common_pb2.ChatMessage(role=m.role, content=m.content) for m in messages]
        )
        try:
            r = await self._stub.CountTokens(request, timeout=timeout_s or self._timeout, metadata=self._md())
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None
        return int(r.tokens)
