"""Thin gRPC adapter: proto messages <-> the Worker domain object."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog

from rationer.api.common.v1 import common_pb2
from rationer.api.worker.v1 import worker_pb2, worker_pb2_grpc
from rationer.errors import DeadlineExceeded, Unavailable
from rationer.platform.convert import FINISH_TO_PROTO
from services.slm_worker.engine import GenerationOutcome, TextPiece
from services.slm_worker.prompts import Message
from services.slm_worker.worker import Params, Worker


class WorkerRef:
    """The worker once its models are loaded; calls before that are UNAVAILABLE."""

    def __init__(self, worker: Worker | None = None) -> None:
        self.worker = worker

    def get(self) -> Worker:
        if self.worker is None:
            raise Unavailable("the worker is still loading its models; retry shortly or use another worker")
        return self.worker


def _checked(request: Any) -> Any:
    if getattr(request, "request_id", ""):
        # Callers that cannot set metadata name the call in the message.
        structlog.contextvars.bind_contextvars(request_id=request.request_id)
    return request


def _messages(request: Any) -> list[Message]:
    return [Message(role=m.role, content=m.content) for m in request.messages]


def _params(p: common_pb2.GenerationParams) -> Params:
    return Params(
        max_tokens=p.max_tokens,
        temperature=p.temperature if p.HasField("temperature") else None,
        top_p=p.top_p if p.HasField("top_p") else None,
        stop=list(p.stop),
        seed=p.seed if p.HasField("seed") else None,
        top_k=p.top_k if p.HasField("top_k") else None,
    )


def _usage(o: GenerationOutcome) -> common_pb2.Usage:
    return common_pb2.Usage(
        prompt_tokens=o.prompt_tokens,
        completion_tokens=o.completion_tokens,
        total_tokens=o.prompt_tokens + o.completion_tokens,
    )


def _usage_so_far(p: TextPiece) -> common_pb2.Usage:
    return common_pb2.Usage(
        prompt_tokens=p.prompt_tokens,
        completion_tokens=p.completion_tokens,
        total_tokens=p.prompt_tokens + p.completion_tokens,
    )


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    def __init__(self, ref: WorkerRef) -> None:
        self._ref = ref

    async def Generate(self, request: Any, context: Any) -> worker_pb2.GenerateResponse:
        request = _checked(request)
        worker = self._ref.get()
        parts: list[str] = []
        outcome: GenerationOutcome | None = None
        stream = worker.generate(
            request.model, _messages(request), _params(request.params), timeout_s=context.time_remaining()
        )
        async with contextlib.aclosing(stream):
            async for item in stream:
                if isinstance(item, GenerationOutcome):
                    outcome = item
                else:
                    parts.append(item.text)
        assert outcome is not None  # SlotPool.generate always ends with one
        if outcome.finish_reason == "deadline":
            # The server's clock runs a little ahead of the caller's, so a cut
            # reply could reach the caller just before its own timer fires and
            # pass as a whole answer. The proto promises DEADLINE_EXCEEDED.
            raise DeadlineExceeded(
                f"the deadline passed after {outcome.completion_tokens} tokens; "
                "the slot was freed. Allow more time or ask for fewer max_tokens"
            )
        return worker_pb2.GenerateResponse(
            text="".join(parts),
            usage=_usage(outcome),
            finish_reason=FINISH_TO_PROTO[outcome.finish_reason],
            model=worker.model(request.model).entry.name,
            time_to_first_token_ms=outcome.time_to_first_token_ms,
            generation_ms=outcome.generation_ms,
        )

    async def GenerateStream(self, request: Any, context: Any) -> AsyncIterator[worker_pb2.GenerateChunk]:
        request = _checked(request)
        worker = self._ref.get()
        name = worker.model(request.model).entry.name
        stream = worker.generate(
            request.model, _messages(request), _params(request.params), timeout_s=context.time_remaining()
        )
        async with contextlib.aclosing(stream):
            async for item in stream:
                if isinstance(item, GenerationOutcome):
                    yield worker_pb2.GenerateChunk(
                        usage=_usage(item),
                        finish_reason=FINISH_TO_PROTO[item.finish_reason],
                        model=name,
                        final=True,
                    )
                else:
                    yield worker_pb2.GenerateChunk(delta=item.text, usage_so_far=_usage_so_far(item))

    async def ListModels(self, request: Any, context: Any) -> worker_pb2.ListModelsResponse:
        worker = self._ref.get()
        models = [
            worker_pb2.ModelInfo(
                name=m.name,
                tier=m.tier,
                context_size=m.context_size,
                quantization=m.quantization,
                device=m.device,
                slots=m.load.slots,
                busy_slots=m.load.busy_slots,
                free_slots=m.load.free_slots,
                queue_depth=m.load.queue_depth,
                queue_capacity=m.load.queue_capacity,
                recent_tokens_per_second=m.load.recent_tokens_per_second,
                chat_format=m.chat_format,
            )
            for m in worker.list_models()
        ]
        return worker_pb2.ListModelsResponse(models=models, worker_id=worker.worker_id)

    async def CountTokens(self, request: Any, context: Any) -> worker_pb2.CountTokensResponse:
        request = _checked(request)
        tokens = await self._ref.get().count_tokens(request.model, _messages(request))
        return worker_pb2.CountTokensResponse(tokens=tokens)
