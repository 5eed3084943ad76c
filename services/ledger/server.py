"""gRPC server factory of the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from rationer.api.ledger.v1 import ledger_pb2 as pb
from rationer.api.ledger.v1 import ledger_pb2_grpc as pb_grpc
from rationer.platform.interceptor import ServiceCredential
from rationer.platform.metrics import RpcMetrics
from rationer.platform.server import build_server
from services.ledger.admin import LedgerAdmin
from services.ledger.budget_alerts import BudgetAlerts
from services.ledger.ledger import Ledger
from services.ledger.servicer import LedgerAdminServicer, LedgerServicer

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["LedgerService"].full_name,
    pb.DESCRIPTOR.services_by_name["LedgerAdminService"].full_name,
)


def _methods(service: str, *names: str) -> tuple[str, ...]:
    desc = pb.DESCRIPTOR.services_by_name[service]
    return tuple(f"/{desc.full_name}/{m.name}" for m in desc.methods if not names or m.name in names)


# Callable without the service token: Usage and WhoAmI (the caller's own API key
# or the admin credential decides what it may read), the public price list, and the
# admin service (the admin credential). Every other data-plane RPC moves money
# or resolves keys and is the router's alone.
OPEN_METHODS = frozenset(
    _methods("LedgerService", "Usage", "ListPrices", "WhoAmI") + _methods("LedgerAdminService")
)


@dataclass(frozen=True)
class LedgerDeps:
    ledger: Ledger
    admin: LedgerAdmin
    alerts: BudgetAlerts
    metrics: RpcMetrics = field(default_factory=RpcMetrics)  # this server's own registry


def create_server(address: str, deps: LedgerDeps, *, service_token: str) -> tuple[grpc.aio.Server, int]:
    """The ledger's server (not started); data-plane RPCs demand ``service_token``."""

    def register(server: grpc.aio.Server) -> None:
        pb_grpc.add_LedgerServiceServicer_to_server(LedgerServicer(deps.ledger, deps.admin), server)
        pb_grpc.add_LedgerAdminServiceServicer_to_server(LedgerAdminServicer(deps.admin, deps.alerts), server)

    credential = ServiceCredential(service_token, OPEN_METHODS)
    return build_server(address, service="ledger", service_names=SERVICE_NAMES, register=register,
                        credential=credential, metrics=deps.metrics)  # fmt: skip
