"""The driver against real gRPC servers on loopback (no-op and scripted routers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from rationer.api.common.v1 import common_pb2
from rationer.api.router.v1 import router_pb2, router_pb2_grpc
from rationer.replay.driver import DriveOptions, Driver
from rationer.replay.noop import NoopRouter, noop_keys, running_noop_router
from rationer.replay.trace import TraceLine


def _lines(n: int, spacing: float = 0.0) -> list[TraceLine]:
    return [TraceLine(id=f"r{i}", ts=i * spacing, org="o", team=f"t{i % 2}", user="u", project="p",
                      messages=(("user", f"q{i}"),), max_tokens=4) for i in range(n)]  # fmt: skip


async def test_every_line_recorded_against_noop() -> None:
    lines = _lines(50)
    async with running_noop_router() as address:
        res = await Driver(DriveOptions(address, None, 8, run_id="t"), noop_keys(lines)).run(lines)
    assert [r.status for r in res.records] == ["ok"] * 50
    assert len({r.request_id for r in res.records}) == 50
    assert res.tiers == {"noop": {"kind": "local", "rank": 0, "model": "noop"}}
    assert res.served_rps > 0


class Scripted(NoopRouter):
    """Denies line 1, fails line 2, counts concurrency, echoes what it received."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.seen: list[tuple[str, str, str, int]] = []

    async def Complete(self, request: router_pb2.CompleteRequest, context: Any) -> router_pb2.CompleteResponse:
        md = dict(context.invocation_metadata())
        self.seen.append((md["x-request-id"], md["authorization"], md.get("x-rationer-project", ""),
                          request.params.max_tokens))  # fmt: skip
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            if request.messages[0].content == "q1":
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "budget:team:o/t1 exhausted")
            if request.messages[0].content == "q2":
                await context.abort(grpc.StatusCode.UNAVAILABLE, "no tier")
            route = router_pb2.RouteInfo(tier="x", cache_hit=True, usage=common_pb2.Usage(prompt_tokens=3),
                                         cost=common_pb2.Money(nano_usd=7))  # fmt: skip
            return router_pb2.CompleteResponse(text="hello", route=route)
        finally:
            self.in_flight -= 1


@asynccontextmanager
async def _serve(servicer: Any) -> AsyncIterator[str]:
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_outcomes_metadata_and_concurrency_limit() -> None:
    lines = _lines(12, spacing=0.001)
    svc = Scripted()
    async with _serve(svc) as address:
        res = await Driver(DriveOptions(address, 10.0, 3, run_id="run"), noop_keys(lines)).run(lines)
    by_id = {r.id: r for r in res.records}
    assert by_id["r1"].status == "denied" and "budget:team" in by_id["r1"].error
    assert by_id["r2"].status == "error" and by_id["r2"].error.startswith("UNAVAILABLE")
    ok = by_id["r0"]
    assert (ok.status, ok.text, ok.tier, ok.cache_hit, ok.prompt_tokens, ok.cost) == ("ok", "hello", "x", True, 3, 7)
    assert svc.peak <= 3
    assert sorted(s[0] for s in svc.seen) == [f"run-{i:06d}" for i in range(12)]
    assert {s[1:] for s in svc.seen} == {("Bearer rk-noop", "p", 4)}
