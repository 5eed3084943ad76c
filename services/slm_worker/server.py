"""gRPC server factory of the SLM worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from rationer.api.worker.v1 import worker_pb2
from rationer.platform.server import build_server
from services.slm_worker.servicer import UndecodableRequest, WorkerRef, WorkerServicer

SERVICE_NAME = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name


@dataclass
class WorkerDeps:
    ref: WorkerRef


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return UndecodableRequest(exc)

    return deserialize


def _register(servicer: WorkerServicer) -> Callable[[grpc.aio.Server], None]:
    # Hand-written instead of add_WorkerServiceServicer_to_server so a request
    # that fails to parse reaches the servicer (-> INVALID_ARGUMENT) rather
    # than failing inside gRPC with a bare INTERNAL.
    handlers = {
        "Generate": grpc.unary_unary_rpc_method_handler(
            servicer.Generate,
            request_deserializer=_lenient(worker_pb2.GenerateRequest.FromString),
            response_serializer=worker_pb2.GenerateResponse.SerializeToString,
        ),
        "GenerateStream": grpc.unary_stream_rpc_method_handler(
            servicer.GenerateStream,
            request_deserializer=_lenient(worker_pb2.GenerateRequest.FromString),
            response_serializer=worker_pb2.GenerateChunk.SerializeToString,
        ),
        "ListModels": grpc.unary_unary_rpc_method_handler(
            servicer.ListModels,
            request_deserializer=_lenient(worker_pb2.ListModelsRequest.FromString),
            response_serializer=worker_pb2.ListModelsResponse.SerializeToString,
        ),
        "CountTokens": grpc.unary_unary_rpc_method_handler(
            servicer.CountTokens,
            request_deserializer=_lenient(worker_pb2.CountTokensRequest.FromString),
            response_serializer=worker_pb2.CountTokensResponse.SerializeToString,
        ),
    }

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))

    return register


def create_server(address: str, deps: WorkerDeps, *, serving: bool = False) -> tuple[grpc.aio.Server, int]:
    """A worker server bound to ``address`` (not started).

    Health stays NOT_SERVING until the caller has loaded and warmed the
    models and calls ``rationer.platform.server.set_serving``.
    """
    return build_server(
        address,
        service="slm_worker",
        service_names=(SERVICE_NAME,),
        register=_register(WorkerServicer(deps.ref)),
        serving=serving,
    )
