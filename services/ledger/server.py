"""gRPC server factory of the ledger."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from rationer.api.ledger.v1 import ledger_pb2 as pb
from rationer.api.ledger.v1 import ledger_pb2_grpc as pb_grpc
from rationer.platform.server import build_server
from services.ledger.admin import LedgerAdmin
from services.ledger.ledger import Ledger
from services.ledger.servicer import LedgerAdminServicer, LedgerServicer

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["LedgerService"].full_name,
    pb.DESCRIPTOR.services_by_name["LedgerAdminService"].full_name,
)


@dataclass(frozen=True)
class LedgerDeps:
    ledger: Ledger
    admin: LedgerAdmin


def create_server(address: str, deps: LedgerDeps) -> tuple[grpc.aio.Server, int]:
    def register(server: grpc.aio.Server) -> None:
        pb_grpc.add_LedgerServiceServicer_to_server(LedgerServicer(deps.ledger, deps.admin), server)
        pb_grpc.add_LedgerAdminServiceServicer_to_server(LedgerAdminServicer(deps.admin), server)

    return build_server(address, service="ledger", service_names=SERVICE_NAMES, register=register)
