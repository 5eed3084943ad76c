"""Server factory pieces and the graceful-shutdown loop.

Each service's ``create_server(address, deps)`` calls :func:`build_server`
with a callback that adds its servicers. The result always has the standard
health and reflection services, so ``grpcurl`` works against every service;
both stay open when the service demands a service credential.
"""

from __future__ import annotations

import asyncio
import signal
import weakref
from collections.abc import Awaitable, Callable, Sequence

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from rationer.errors import InvalidArgument
from rationer.platform.interceptor import PlatformInterceptor, ServiceCredential
from rationer.platform.metrics import RpcMetrics
from rationer.platform.ports import port_busy_error, port_in_use, split_host_port

log = structlog.get_logger(__name__)

_HEALTH: weakref.WeakKeyDictionary[grpc.aio.Server, HealthServicer] = weakref.WeakKeyDictionary()
_SERVICES: weakref.WeakKeyDictionary[grpc.aio.Server, tuple[str, ...]] = weakref.WeakKeyDictionary()

DEFAULT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
)


def build_server(
    address: str,
    *,
    service: str,
    service_names: Sequence[str],
    register: Callable[[grpc.aio.Server], None],
    credential: ServiceCredential | None,
    serving: bool = True,
    extra_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),  # type: ignore[type-arg]
    metrics: RpcMetrics | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Create (not start) a ``grpc.aio`` server bound to ``address``.

    ``service_names`` are the full proto names of the servicers ``register``
    adds. Health reports them SERVING at once unless ``serving`` is False, in
    which case the caller flips them with :func:`set_serving` once it is warm.
    ``credential`` is what every other RPC demands of its caller (None: no
    service token, only for the router, whose callers present API keys).
    ``metrics``: where the RPC counters go, normally the server's own
    ``RpcMetrics()`` (None: the process-wide registry).
    """
    server = grpc.aio.server(
        interceptors=[PlatformInterceptor(service, credential, metrics), *extra_interceptors], options=DEFAULT_OPTIONS
    )
    register(server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:  # grpc >= 1.60 raises instead of returning 0
        port = 0
    if port == 0:
        host, wanted = split_host_port(address)
        if port_in_use(host, wanted):
            raise port_busy_error(wanted, f"{service} listen address {address}",
                                  "stop what holds it, or choose another port (rationer up --base-port N)")
        raise InvalidArgument(f"cannot bind gRPC server to {address!r}: invalid address")
    _HEALTH[server] = health_servicer
    _SERVICES[server] = tuple(service_names)
    return server, port


async def set_serving(server: grpc.aio.Server, serving: bool) -> None:
    """Flip the overall and per-service health status."""
    servicer = _HEALTH[server]
    status = (
        health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *_SERVICES[server]):
        await servicer.set(name, status)


async def start(server: grpc.aio.Server, *, serving: bool = True) -> None:
    await server.start()
    await set_serving(server, serving)


async def shutdown(
    server: grpc.aio.Server,
    grace_s: float,
    on_drain: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Stop taking new calls, let in-flight ones finish within ``grace_s``."""
    await set_serving(server, False)
    if on_drain is not None:
        await on_drain()
    await server.stop(grace_s)


async def serve_until_signal(
    server: grpc.aio.Server,
    grace_s: float,
    on_drain: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Block until SIGTERM or SIGINT, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down", grace_s=grace_s)
    await shutdown(server, grace_s, on_drain)
    log.info("stopped")
