"""Prometheus metrics of a gRPC server: one registry per server, so two servers in one process never collide."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class RpcMetrics:
    """Calls and latency per service, method and code, in ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._calls = Counter("rationer_rpcs_total", "gRPC calls handled", ["service", "method", "code"],
                              registry=self.registry)  # fmt: skip
        self._seconds = Histogram("rationer_rpc_seconds", "gRPC call latency", ["service", "method"],
                                  buckets=_BUCKETS, registry=self.registry)  # fmt: skip

    def observe(self, service: str, method: str, code: str, seconds: float) -> None:
        self._calls.labels(service, method, code).inc()
        self._seconds.labels(service, method).observe(seconds)


_GLOBAL: list[RpcMetrics] = []


def global_rpc_metrics() -> RpcMetrics:
    """The metrics in prometheus_client's process-wide ``REGISTRY``, for a server built without its own.

    Only for a process that serves its other metrics from that registry too
    (the router's HTTP door); every other service gives its server an ``RpcMetrics()``.
    """
    if not _GLOBAL:
        _GLOBAL.append(RpcMetrics(REGISTRY))
    return _GLOBAL[0]


def start_metrics_endpoint(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> int:
    """Serve ``registry`` at /metrics on a daemon thread; returns the bound port."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_port)
