"""Thin gRPC adapter over :class:`RouterCore`'s façade: convert, delegate, convert back."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import structlog

from rationer.api.common.v1 import common_pb2
from rationer.api.router.v1 import router_pb2, router_pb2_grpc
from rationer.platform.convert import FINISH_TO_PROTO
from rationer.platform.identity import bearer
from rationer.platform.interceptor import REQUEST_ID_KEY
from services.router import access
from services.router.pipeline import RouterCore
from services.router.request_ids import check_request_id
from services.router.types import CompletionRequest, GenParams, Message, RouteResult

KIND = {"local": common_pb2.TIER_KIND_LOCAL, "frontier": common_pb2.TIER_KIND_FRONTIER,
        "anthropic": common_pb2.TIER_KIND_FRONTIER}  # fmt: skip


def bearer_token(metadata: dict[str, str]) -> str:
    return bearer(metadata.get("authorization"))


def _metadata(context: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def _deadline(context: Any) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def to_request(msg: router_pb2.CompleteRequest, project: str) -> CompletionRequest:
    p = msg.params
    return CompletionRequest(
        messages=tuple(Message(m.role, m.content) for m in msg.messages),
        params=GenParams(
            max_tokens=p.max_tokens,
            temperature=p.temperature if p.HasField("temperature") else None,
            top_p=p.top_p if p.HasField("top_p") else None,
            stop=tuple(p.stop),
            seed=p.seed if p.HasField("seed") else None,
            top_k=p.top_k if p.HasField("top_k") else None,
        ),
        model=msg.model,
        allow_cache_when_sampling=msg.allow_cache_when_sampling,
        no_cache=msg.no_cache,
        project=project,
        user=msg.user,
    )


def route_info(res: RouteResult) -> router_pb2.RouteInfo:
    return router_pb2.RouteInfo(
        request_id=res.request_id,
        tier=res.tier,
        model=res.model,
        complexity=res.complexity,
        cache_hit=res.cache_hit,
        usage=common_pb2.Usage(
            prompt_tokens=res.prompt_tokens,
            completion_tokens=res.completion_tokens,
            total_tokens=res.prompt_tokens + res.completion_tokens,
        ),
        cost=common_pb2.Money(nano_usd=res.cost_nano_usd),
        savings=common_pb2.Money(nano_usd=res.savings_nano_usd),
        fallbacks=res.fallbacks,
        downgraded=res.downgraded,
        budget_remaining_fraction=res.budget_remaining_fraction,
        finish_reason=FINISH_TO_PROTO.get(res.finish_reason, common_pb2.FINISH_REASON_STOP),
        gateway_overhead_ms=res.gateway_overhead_ms,
        model_ms=res.model_ms,
        usage_exact=res.usage_exact,
        stage_ms=res.stage_ms,
        settlement_pending=res.settlement_pending,
    )


def _request_id(md: dict[str, str]) -> str:
    # The interceptor has bound the caller's id (or a fresh one) for logs; the
    # router only serves a caller id that keeps the shared rule.
    if check_request_id(md.get(REQUEST_ID_KEY, "")):
        return md[REQUEST_ID_KEY]
    return str(structlog.contextvars.get_contextvars().get("request_id", ""))


@contextlib.contextmanager
def _logged(method: str) -> Iterator[Callable[[], None]]:
    """The call's access-log line (access.py): OK once ``done()`` ran, else the error's code."""
    ok: list[bool] = []
    with access.request("grpc", _bound_request_id()) as entry:
        try:
            yield lambda: ok.append(True)
        except BaseException as exc:
            access.failed(exc)
            access.finish(entry, method, access.grpc_status(exc))
            raise
        # A stream the caller stopped reading ends here without done(): it was cancelled.
        access.finish(entry, method, "OK" if ok else "CANCELLED")


def _bound_request_id() -> str:
    return str(structlog.contextvars.get_contextvars().get("request_id", ""))


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, core: RouterCore) -> None:
        self._core = core

    async def Complete(self, request: router_pb2.CompleteRequest, context: Any) -> router_pb2.CompleteResponse:
        md = _metadata(context)
        with _logged("Complete") as done:
            text, res = await self._core.complete(
                bearer_token(md),
                to_request(request, md.get("x-rationer-project", "")),
                request_id=_request_id(md),
                deadline=_deadline(context),
            )
            done()
        if res.fallbacks:
            # As the HTTP door's header: the answer is not from the first tier planned (RouteInfo.fallbacks too).
            context.set_trailing_metadata((("x-rationer-fallbacks", ",".join(res.fallbacks)),))
        return router_pb2.CompleteResponse(text=text, route=route_info(res))

    async def CompleteStream(
        self, request: router_pb2.CompleteRequest, context: Any
    ) -> AsyncIterator[router_pb2.CompleteChunk]:
        md = _metadata(context)
        with _logged("CompleteStream") as done:
            events = self._core.stream(
                bearer_token(md),
                to_request(request, md.get("x-rationer-project", "")),
                request_id=_request_id(md),
                deadline=_deadline(context),
            )
            # aclosing: a caller that cancels closes the core's stream now (which
            # stops the model and bills what it generated), not at garbage collection.
            async with contextlib.aclosing(events):
                async for ev in events:
                    if ev.final is not None:
                        yield router_pb2.CompleteChunk(final=True, route=route_info(ev.final))
                    else:
                        yield router_pb2.CompleteChunk(delta=ev.delta, restart=ev.restart)
            done()

    async def ListTiers(self, request: router_pb2.ListTiersRequest, context: Any) -> router_pb2.ListTiersResponse:
        md = _metadata(context)
        _request_id(md)  # the same rule on every RPC
        tiers = await self._core.models_for(bearer_token(md))
        unspecified = common_pb2.TIER_KIND_UNSPECIFIED
        return router_pb2.ListTiersResponse(
            tiers=[
                common_pb2.Tier(name=t.name, kind=KIND.get(t.kind, unspecified), rank=t.rank, model=t.model)
                for t in tiers
            ]
        )

    async def ReportWrongHit(
        self, request: router_pb2.ReportWrongHitRequest, context: Any
    ) -> router_pb2.ReportWrongHitResponse:
        report = await self._core.report_wrong_hit(bearer_token(_metadata(context)), request.request_id)
        return router_pb2.ReportWrongHitResponse(evicted=report.evicted, already_reported=report.already_reported)
