"""A real OTLP/gRPC trace receiver on loopback, for tests of the services' tracing.

It implements ``opentelemetry.proto.collector.trace.v1.TraceService`` (the
collector's own API, with the proto classes from ``opentelemetry-proto``) on a
thread-pool ``grpc.server``, not ``grpc.aio``: a provider's ``force_flush``
blocks the event loop the services run on until the export is answered.

    with running_otlp_receiver() as receiver:
        configure_tracing("router", receiver.endpoint)
        ...
        receiver.spans()  # every span received, flattened
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


def _value(v: common_pb2.AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str  # the resource's service.name
    name: str
    kind: str  # "SERVER", "CLIENT", "INTERNAL", ...
    trace_id: str  # hex
    span_id: str
    parent_span_id: str  # "" for a root
    attributes: dict[str, Any]
    status: str  # "STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,
               context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:  # fmt: skip
        with self.lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    def __init__(self, service: _TraceService, port: int) -> None:
        self._service = service
        self.endpoint = f"127.0.0.1:{port}"

    def raw(self) -> list[bytes]:
        """Every export request as the wire bytes it came in."""
        with self._service.lock:
            return [r.SerializeToString() for r in self._service.requests]

    def spans(self) -> list[ReceivedSpan]:
        with self._service.lock:
            requests = list(self._service.requests)
        out: list[ReceivedSpan] = []
        for req in requests:
            for rs in req.resource_spans:
                service = str(_attributes(rs.resource.attributes).get("service.name", ""))
                for ss in rs.scope_spans:
                    out.extend(_span(service, s) for s in ss.spans)
        return out


def _span(service: str, s: trace_pb2.Span) -> ReceivedSpan:
    return ReceivedSpan(
        service=service, name=s.name, kind=trace_pb2.Span.SpanKind.Name(s.kind).removeprefix("SPAN_KIND_"),
        trace_id=s.trace_id.hex(), span_id=s.span_id.hex(), parent_span_id=s.parent_span_id.hex(),
        attributes=_attributes(s.attributes), status=trace_pb2.Status.StatusCode.Name(s.status.code),
    )  # fmt: skip


@contextmanager
def running_otlp_receiver() -> Iterator[OtlpReceiver]:
    service = _TraceService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield OtlpReceiver(service, port)
    finally:
        server.stop(None)
