"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

RPCS = Counter("rationer_rpcs_total", "gRPC calls handled", ["service", "method", "code"])
RPC_SECONDS = Histogram(
    "rationer_rpc_seconds",
    "gRPC call latency",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def observe_rpc(service: str, method: str, code: str, seconds: float) -> None:
    RPCS.labels(service, method, code).inc()
    RPC_SECONDS.labels(service, method).observe(seconds)


def start_metrics_endpoint(host: str, port: int) -> int:
    """Serve /metrics on a daemon thread; returns the bound port."""
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)
