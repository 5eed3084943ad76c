"""rationer.platform.tracing: off by default and then untouched; on, spans with W3C context and gRPC codes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from rationer.platform import tracing
from rationer.platform.settings import ServiceSettings, load_settings
from services.router.http.tracing import tracing_middlewares


class DemoSettings(ServiceSettings):
    pass


Finished = Callable[[], Sequence[ReadableSpan]]


@pytest.fixture
def exported() -> Iterator[Finished]:
    """Tracing on for "demo"; calling it flushes the batch and answers the spans exported so far."""
    exporter = InMemorySpanExporter()
    handle = tracing.configure_tracing("demo", "127.0.0.1:1", exporter=exporter)
    assert handle is not None

    def finished() -> Sequence[ReadableSpan]:
        assert handle.force_flush()
        return exporter.get_finished_spans()

    try:
        yield finished
    finally:
        handle.shutdown()


def test_off_means_no_provider_no_middleware_and_the_noop_tracer() -> None:
    assert tracing.configure_tracing("demo", "") is None
    assert tracing.tracer("demo") is tracing.NOOP_TRACER
    assert tracing_middlewares("demo") == []
    with tracing.server_span("demo", "/pkg.Svc/M", {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}) as span:
        assert span is tracing.NO_SPAN and tracing.current_tracer() is tracing.NOOP_TRACER
    tracing.set_rpc_status(span, "INTERNAL")  # a no-op on the no-op span


def test_the_endpoint_is_a_settings_field_with_a_shared_and_a_per_service_variable() -> None:
    assert load_settings(DemoSettings, "demo", environ={}).otlp_endpoint == ""
    shared = {"RATIONER_OTLP_ENDPOINT": "collector:4317"}
    assert load_settings(DemoSettings, "demo", environ=shared).otlp_endpoint == "collector:4317"
    own = {**shared, "RATIONER_DEMO__OTLP_ENDPOINT": "https://otel.example:4317"}
    assert load_settings(DemoSettings, "demo", environ=own).otlp_endpoint == "https://otel.example:4317"


def test_a_server_span_continues_the_callers_w3c_context(exported: Finished) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    md = {"traceparent": f"00-{trace_id}-{parent}-01", "x-request-id": "r1"}
    with tracing.server_span("demo", "/rationer.ledger.v1.LedgerService/Commit", md) as span:
        assert tracing.current_tracer() is tracing.tracer("demo")
        carrier: dict[str, str] = {}
        tracing.PROPAGATOR.inject(carrier)  # what a downstream call would send
        tracing.set_rpc_status(span, "UNAVAILABLE")
    assert tracing.current_tracer() is tracing.NOOP_TRACER
    (done,) = exported()
    assert done.name == "rationer.ledger.v1.LedgerService/Commit"
    assert f"{done.context.trace_id:032x}" == trace_id and done.parent is not None
    assert f"{done.parent.span_id:016x}" == parent
    assert carrier["traceparent"] == f"00-{trace_id}-{done.context.span_id:016x}-01"
    assert dict(done.attributes or {}) == {"rpc.system": "grpc", "rpc.service": "rationer.ledger.v1.LedgerService",
                                           "rpc.method": "Commit", "rpc.grpc.status_code": 14}  # fmt: skip
    assert done.status.status_code is StatusCode.ERROR
    assert done.resource.attributes["service.name"] == "rationer-demo"


@pytest.mark.parametrize(("code", "server", "error"), [
    ("OK", True, False), ("NOT_FOUND", True, False), ("StatusCode.INVALID_ARGUMENT", True, False),
    ("INTERNAL", True, True), ("NOT_FOUND", False, True),
])  # fmt: skip
def test_which_codes_mark_a_span_failed(exported: Finished, code: str, server: bool, error: bool) -> None:
    # OTel's gRPC conventions: a server's span fails only for its own faults; a client's for any non-OK code.
    span = tracing.tracer("demo").start_span("x")
    tracing.set_rpc_status(span, code, server=server)
    span.end()
    (done,) = exported()
    assert (done.status.status_code is StatusCode.ERROR) is error
