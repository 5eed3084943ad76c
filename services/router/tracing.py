"""The router's GenAI span: one per chat request, around the façade's ``complete`` and ``stream``.

Named ``chat {requested model}`` with the OpenTelemetry GenAI semantic
conventions (``gen_ai.*``) plus what the gateway decided (``rationer.*``):
which tier answered, whether from the cache, what it cost. Its children are
the calls the request made (ledger, cache, worker), so one trace shows the
whole request. Never the prompt or the answer: spans leave the process.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from rationer.errors import RationerError
from rationer.platform.tracing import NOOP_TRACER, tracer
from services.router.types import CompletionRequest, RouteResult, StreamEvent

SERVICE = "router"
NANO = 1_000_000_000
MAX_MODEL_CHARS = 128

F = TypeVar("F", bound=Callable[..., Awaitable[tuple[str, RouteResult]]])
G = TypeVar("G", bound=Callable[..., AsyncGenerator[StreamEvent, None]])


def _start(raw: CompletionRequest, *, streamed: bool) -> Span:
    # Cut: the span opens before validation, and the name is the caller's text.
    requested = (raw.model or "auto")[:MAX_MODEL_CHARS]
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "rationer",
        "gen_ai.request.model": requested,
        "rationer.streamed": streamed,
    }
    attributes["gen_ai.request.max_tokens"] = raw.params.max_tokens
    if raw.params.temperature is not None:
        attributes["gen_ai.request.temperature"] = raw.params.temperature
    return tracer(SERVICE).start_span(f"chat {requested}", kind=SpanKind.INTERNAL, attributes=attributes)


def record_result(span: Span, result: RouteResult) -> None:
    """The answer's GenAI and gateway attributes (counts and names only)."""
    span.set_attributes({
        "gen_ai.response.model": result.model,
        "gen_ai.response.id": result.request_id,
        "gen_ai.response.finish_reasons": [result.finish_reason],
        "gen_ai.usage.input_tokens": result.prompt_tokens,
        "gen_ai.usage.output_tokens": result.completion_tokens,
        "rationer.tier": result.tier,
        "rationer.cache": "hit" if result.cache_hit else "miss",
        "rationer.cost_usd": result.cost_nano_usd / NANO,
        "rationer.savings_usd": result.savings_nano_usd / NANO,
        "rationer.fallbacks": list(result.fallbacks),
        "rationer.downgraded": result.downgraded,
        "rationer.usage_exact": result.usage_exact,
    })  # fmt: skip


def _failed(span: Span, exc: BaseException) -> None:
    # The error's type, never its message: a message may quote the request.
    span.set_attribute("error.type", exc.code if isinstance(exc, RationerError) else type(exc).__name__)
    span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))


def traced_complete(fn: F) -> F:
    """``RouterCore.complete`` inside the request's GenAI span (untouched while tracing is off)."""

    @functools.wraps(fn)
    async def wrapper(self: Any, api_key: str, raw: CompletionRequest, **kw: Any) -> tuple[str, RouteResult]:
        if tracer(SERVICE) is NOOP_TRACER:
            return await fn(self, api_key, raw, **kw)
        span = _start(raw, streamed=False)
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                text, result = await fn(self, api_key, raw, **kw)
            record_result(span, result)
            return text, result
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            span.end()

    return wrapper  # type: ignore[return-value]


def traced_stream(fn: G) -> G:
    """``RouterCore.stream`` inside the request's GenAI span (untouched while tracing is off)."""

    @functools.wraps(fn)
    def wrapper(self: Any, api_key: str, raw: CompletionRequest, **kw: Any) -> AsyncGenerator[StreamEvent, None]:
        events = fn(self, api_key, raw, **kw)
        if tracer(SERVICE) is NOOP_TRACER:
            return events
        return _traced_events(events, _start(raw, streamed=True))

    return wrapper  # type: ignore[return-value]


async def _traced_events(events: AsyncGenerator[StreamEvent, None], span: Span) -> AsyncGenerator[StreamEvent, None]:
    # The span is current only while the pipeline runs (each step), never
    # across a yield: the consumer's code between events is not in it, and a
    # generator closed from another context has nothing to detach.
    try:
        async with contextlib.aclosing(events):
            while True:
                with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                    try:
                        event = await events.__anext__()
                    except StopAsyncIteration:
                        break
                if event.final is not None:
                    record_result(span, event.final)
                yield event
    except GeneratorExit:
        span.set_attribute("rationer.closed_early", True)
        raise
    except BaseException as exc:
        _failed(span, exc)
        raise
    finally:
        span.end()
