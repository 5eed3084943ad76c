"""Server factory of the cache service (its dependencies: ``services.cache.wiring``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from rationer.api.cache.v1 import cache_pb2, cache_pb2_grpc
from rationer.platform.interceptor import ServiceCredential
from rationer.platform.metrics import RpcMetrics
from rationer.platform.server import build_server
from services.cache.cache import SemanticCache
from services.cache.servicer import CacheServicer

SERVICE_NAME = cache_pb2.DESCRIPTOR.services_by_name["CacheService"].full_name


@dataclass
class CacheDeps:
    cache: SemanticCache
    metrics: RpcMetrics = field(default_factory=RpcMetrics)  # this server's own registry


def create_server(address: str, deps: CacheDeps, *, service_token: str) -> tuple[grpc.aio.Server, int]:
    """Create (not start) the server. Health starts NOT_SERVING: the caller
    flips it once ``deps.cache.start()`` has loaded the index. Every RPC
    demands ``service_token`` (cached answers are tenants' data)."""

    def register(server: grpc.aio.Server) -> None:
        cache_pb2_grpc.add_CacheServiceServicer_to_server(CacheServicer(deps.cache), server)

    return build_server(address, service="cache", service_names=[SERVICE_NAME], register=register,
                        credential=ServiceCredential(service_token), serving=False,
                        metrics=deps.metrics)  # fmt: skip
