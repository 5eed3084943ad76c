"""gRPC server factory of the SLM worker."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from rationer.api.worker.v1 import worker_pb2, worker_pb2_grpc
from rationer.platform.interceptor import ServiceCredential
from rationer.platform.metrics import RpcMetrics
from rationer.platform.server import build_server
from services.slm_worker.servicer import WorkerRef, WorkerServicer

SERVICE_NAME = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name


@dataclass
class WorkerDeps:
    ref: WorkerRef
    metrics: RpcMetrics = field(default_factory=RpcMetrics)  # this server's own registry


def create_server(
    address: str, deps: WorkerDeps, *, service_token: str, serving: bool = False
) -> tuple[grpc.aio.Server, int]:
    """A worker server bound to ``address`` (not started).

    Health stays NOT_SERVING until the caller has loaded and warmed the
    models and calls ``rationer.platform.server.set_serving``. Every RPC
    demands ``service_token``. Undecodable request bytes are answered
    INVALID_ARGUMENT by the platform interceptor.
    """

    def register(server: grpc.aio.Server) -> None:
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(WorkerServicer(deps.ref), server)

    return build_server(
        address,
        service="slm_worker",
        service_names=(SERVICE_NAME,),
        register=register,
        credential=ServiceCredential(service_token),
        serving=serving,
        metrics=deps.metrics,
    )
