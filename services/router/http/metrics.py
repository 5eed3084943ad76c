"""The HTTP door's request counter and latency histogram, in the router's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._requests = Counter("rationer_http_requests_total", "HTTP requests handled", ["route", "method", "status"],
                                 registry=registry)  # fmt: skip
        self._seconds = Histogram("rationer_http_request_seconds",
                                  "HTTP request latency (to the last byte for streams)", ["route"],
                                  buckets=_BUCKETS, registry=registry)  # fmt: skip

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.labels(route, method, str(status)).inc()
        self._seconds.labels(route).observe(seconds)
