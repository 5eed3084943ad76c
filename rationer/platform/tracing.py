"""OpenTelemetry tracing, shared by every service (docs/operations.md, "Traces").

Off unless a service's settings name an OTLP/gRPC collector
(``otlp_endpoint``): then :func:`configure_tracing` gives that service its own
tracer provider (``service.name`` ``rationer-router``, ``-ledger``, ``-cache``,
``-slm-worker``) that batches spans to the collector. Off, :func:`tracer`
answers the API's no-op tracer, channels get no tracing interceptor and the
hooks return before touching any span or context, so an untraced deployment
pays one dict lookup per call.

Providers are per service, not the API's process-wide global, so the
in-process test stack (all four services in one process) still exports each
span under the service that made it.

Context crosses processes as W3C trace context (``traceparent`` and
``tracestate``) in gRPC metadata: the server interceptor extracts it
(:func:`server_span`), and the channels from
:func:`rationer.platform.client.internal_channel` inject it
(:func:`client_interceptors`), each call in a CLIENT span of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

NOOP_TRACER: Tracer = trace.NoOpTracer()
NO_SPAN: Span = trace.INVALID_SPAN
# W3C trace context only: no baggage, so nothing a caller sends rides along unasked.
PROPAGATOR = TraceContextTextMapPropagator()
INSTRUMENTATION = "rationer"

_TRACERS: dict[str, Tracer] = {}
# The tracer of the service whose span is current: the router's client calls
# make their CLIENT spans with it (a channel does not know whose it is).
_CURRENT: contextvars.ContextVar[Tracer] = contextvars.ContextVar("rationer_tracer", default=NOOP_TRACER)


@dataclass
class Tracing:
    """A configured service's provider; ``shutdown`` flushes what is still batched."""

    service: str
    endpoint: str
    provider: Any  # opentelemetry.sdk.trace.TracerProvider (imported only when tracing is on)

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        return bool(self.provider.force_flush(int(timeout_s * 1000)))

    def shutdown(self) -> None:
        if _TRACERS.get(self.service) is not None:
            del _TRACERS[self.service]
        self.provider.shutdown()


def configure_tracing(service: str, endpoint: str, *, exporter: Any = None) -> Tracing | None:
    """Export ``service``'s spans to the OTLP/gRPC collector at ``endpoint``.

    ``endpoint`` is ``host:port`` or ``http://host:port`` (plaintext) or
    ``https://host:port`` (TLS, system roots); "" leaves tracing off and
    returns None. ``exporter`` replaces the OTLP exporter (tests).
    """
    if not endpoint:
        return None
    # Imported here: an untraced process never loads the SDK or the exporter.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=not endpoint.startswith("https://"))
    name = f"rationer-{service.replace('_', '-')}"
    provider = TracerProvider(resource=Resource.create({"service.name": name,
                                                        "service.namespace": "rationer"}))  # fmt: skip
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _TRACERS[service] = provider.get_tracer(INSTRUMENTATION)
    return Tracing(service, endpoint, provider)


@contextlib.contextmanager
def tracing_for(service: str, endpoint: str) -> Iterator[Tracing | None]:
    """Tracing on (``endpoint`` set) for the block; what is still batched is sent at its end."""
    handle = configure_tracing(service, endpoint)
    try:
        yield handle
    finally:
        if handle is not None:
            handle.shutdown()


def enabled(service: str) -> bool:
    return service in _TRACERS


def tracer(service: str) -> Tracer:
    """``service``'s tracer; the no-op tracer while its tracing is off."""
    return _TRACERS.get(service, NOOP_TRACER)


def current_tracer() -> Tracer:
    """The tracer of the service whose server span is current (no-op outside one)."""
    return _CURRENT.get()


@contextlib.contextmanager
def use_tracer(t: Tracer) -> Iterator[None]:
    token = _CURRENT.set(t)
    try:
        yield
    finally:
        _CURRENT.reset(token)


# ---- gRPC server side -------------------------------------------------------------


def _rpc_attributes(full_method: str) -> dict[str, str]:
    service, _, method = full_method.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}


@contextlib.contextmanager
def server_span(service: str, full_method: str, metadata: Mapping[str, str]) -> Iterator[Span]:
    """The SERVER span of one RPC, current for its duration, child of the caller's trace context."""
    t = tracer(service)
    if t is NOOP_TRACER:
        yield NO_SPAN
        return
    parent = PROPAGATOR.extract(metadata)
    # No automatic status: the interceptor answers domain errors itself, and
    # sets the span's status from the gRPC code (set_rpc_status).
    with t.start_as_current_span(full_method.lstrip("/"), context=parent, kind=SpanKind.SERVER,
                                 attributes=_rpc_attributes(full_method), record_exception=False,
                                 set_status_on_exception=False) as span, use_tracer(t):  # fmt: skip
        yield span


# Codes that say the server failed; the rest are the caller's (OTel's gRPC conventions).
_SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"})


def set_rpc_status(span: Span, code: str, *, server: bool = True) -> None:
    """Record a call's gRPC status code (a ``grpc.StatusCode`` name) on its span."""
    if not span.is_recording():
        return
    name = code.removeprefix("StatusCode.")
    member = grpc.StatusCode.__members__.get(name)
    span.set_attribute("rpc.grpc.status_code", member.value[0] if member is not None else 2)
    if name != "OK" and (not server or name in _SERVER_ERRORS or member is None):
        span.set_status(Status(StatusCode.ERROR, name))


# ---- gRPC client side --------------------------------------------------------------


def _with_context(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    metadata = grpc.aio.Metadata(*(details.metadata or ()), *carrier.items())
    return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                      details.wait_for_ready)  # fmt: skip


def _method_name(details: grpc.aio.ClientCallDetails) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else str(method)


def _client_span(t: Tracer, details: grpc.aio.ClientCallDetails) -> Span:
    method = _method_name(details)
    return t.start_span(method.lstrip("/"), kind=SpanKind.CLIENT, attributes=_rpc_attributes(method))


# One class per call kind: grpc.aio files each interceptor under the first kind
# it is an instance of. The continuation's call is returned untouched, so its
# caller sees the same result or error as without tracing.
class _UnaryTrace(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(
        self, continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails, request: Any,
    ) -> Any:  # fmt: skip
        t = current_tracer()
        if t is NOOP_TRACER:
            return await continuation(client_call_details, request)
        span = _client_span(t, client_call_details)
        with trace.use_span(span, end_on_exit=False):
            call = await continuation(_with_context(client_call_details), request)
        # Awaited here only to time it: the caller awaits the same call and sees its result or error.
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            set_rpc_status(span, exc.code().name, server=False)
        except BaseException:
            set_rpc_status(span, "CANCELLED", server=False)
            span.end()
            raise
        else:
            set_rpc_status(span, "OK", server=False)
        span.end()
        return call


class _StreamTrace(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(
        self, continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails, request: Any,
    ) -> Any:  # fmt: skip
        t = current_tracer()
        if t is NOOP_TRACER:
            return await continuation(client_call_details, request)
        span = _client_span(t, client_call_details)
        with trace.use_span(span, end_on_exit=False):
            call = await continuation(_with_context(client_call_details), request)
        # The stream is read later by the caller; the span ends with the call.
        call.add_done_callback(lambda done: _end_stream_span(span, done))
        return call


_FINISHING: set[asyncio.Task[None]] = set()


def _end_stream_span(span: Span, call: Any) -> None:
    # A done callback cannot await call.code(); the call is done, so a task
    # reads it at once.
    task = asyncio.ensure_future(_finish_stream(span, call))
    _FINISHING.add(task)
    task.add_done_callback(_FINISHING.discard)


async def _finish_stream(span: Span, call: Any) -> None:
    try:
        code = grpc.StatusCode.CANCELLED if call.cancelled() else await call.code()
        set_rpc_status(span, code.name, server=False)
    finally:
        span.end()


def client_interceptors() -> list[Any]:
    """Interceptors that put each call in a CLIENT span and send the trace context.

    None while no service of this process is traced: channels are built after
    ``main`` configured tracing, so an untraced process has no extra hop.
    """
    return [_UnaryTrace(), _StreamTrace()] if _TRACERS else []
