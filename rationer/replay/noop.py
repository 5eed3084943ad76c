"""A trivial RouterService that answers at once: the yardstick for the driver.

Replaying a trace against it measures how many requests per second the
harness itself can push (gRPC client, pacing, bookkeeping, progress), so the
report can show the driver is not what limits a gateway replay. It runs in
the driver's own process and event loop, so the figure is a lower bound on
the driver's capacity: the server's work is counted against it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from rationer.api.common.v1 import common_pb2
from rationer.api.router.v1 import router_pb2, router_pb2_grpc
from rationer.replay.provision import KeyBook, KeyEntry
from rationer.replay.trace import TraceLine


class NoopRouter(router_pb2_grpc.RouterServiceServicer):
    async def Complete(self, request: router_pb2.CompleteRequest, context: Any) -> router_pb2.CompleteResponse:
        route = router_pb2.RouteInfo(tier="noop", model="noop", usage=common_pb2.Usage(prompt_tokens=1))
        return router_pb2.CompleteResponse(text="ok", route=route)

    async def CompleteStream(
        self, request: router_pb2.CompleteRequest, context: Any
    ) -> AsyncIterator[router_pb2.CompleteChunk]:
        yield router_pb2.CompleteChunk(delta="ok")
        yield router_pb2.CompleteChunk(final=True, route=router_pb2.RouteInfo(tier="noop", model="noop"))

    async def ListTiers(self, request: router_pb2.ListTiersRequest, context: Any) -> router_pb2.ListTiersResponse:
        tier = common_pb2.Tier(name="noop", kind=common_pb2.TIER_KIND_LOCAL, rank=0, model="noop")
        return router_pb2.ListTiersResponse(tiers=[tier])

    async def ReportWrongHit(
        self, request: router_pb2.ReportWrongHitRequest, context: Any
    ) -> router_pb2.ReportWrongHitResponse:
        return router_pb2.ReportWrongHitResponse()  # the no-op router has no cache


@asynccontextmanager
async def running_noop_router() -> AsyncIterator[str]:
    """Serve :class:`NoopRouter` on 127.0.0.1:<free port>; yield its address."""
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServiceServicer_to_server(NoopRouter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def noop_keys(lines: list[TraceLine] | tuple[TraceLine, ...]) -> KeyBook:
    """Placeholder keys for every principal (the no-op server checks none)."""
    book = KeyBook("")
    for ln in lines:
        book.keys[KeyBook.slot(ln.org, ln.team, ln.user)] = KeyEntry("k_noop", "rk-noop", ln.org, ln.team, ln.user)
    return book
