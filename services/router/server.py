"""``create_server(address, deps)`` for the router."""

from __future__ import annotations

import grpc

from rationer.api.router.v1 import router_pb2, router_pb2_grpc
from rationer.platform.server import build_server
from services.router.servicer import RouterServicer
from services.router.wiring import RouterDeps

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name


def create_server(address: str, deps: RouterDeps) -> tuple[grpc.aio.Server, int]:
    def register(server: grpc.aio.Server) -> None:
        router_pb2_grpc.add_RouterServiceServicer_to_server(RouterServicer(deps.core), server)

    # No service credential: the router's callers present API keys.
    return build_server(address, service="router", service_names=[SERVICE_NAME], register=register,
                        credential=None, metrics=deps.metrics)  # fmt: skip
