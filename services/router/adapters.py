"""gRPC adapters that give the core its ports: ledger and cache.

They convert between protos and the core's plain dataclasses and turn gRPC
failures into domain errors. Each call forwards the request id and principal
in metadata so logs across services join up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
import structlog

from rationer.api.cache.v1 import cache_pb2, cache_pb2_grpc
from rationer.api.common.v1 import common_pb2
from rationer.api.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from rationer.errors import NotFound
from rationer.platform.client import call_metadata, domain_error
from services.router.ports import CachedAnswer, Charge, Principal, Reservation, WrongHitReport

T = TypeVar("T")
log = structlog.get_logger(__name__)

LEDGER_TIMEOUT_S = 5.0
CACHE_TIMEOUT_S = 2.0


async def _call(service: str, fn: Callable[..., Awaitable[T]], request: Any, timeout: float) -> T:
    try:
        return await fn(request, timeout=timeout, metadata=call_metadata())
    except grpc.aio.AioRpcError as exc:
        raise domain_error(exc, service=service) from exc


class GrpcLedger:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = ledger_pb2_grpc.LedgerServiceStub(channel)

    async def authenticate(self, api_key: str) -> Principal:
        resp = await _call(
            "ledger", self._stub.Authenticate, ledger_pb2.AuthenticateRequest(api_key=api_key), LEDGER_TIMEOUT_S
        )
        p = resp.principal
        return Principal(
            org_id=p.org_id,
            team_id=p.team_id,
            user_id=p.user_id,
            key_id=p.key_id,
            tenant=p.tenant or p.org_id,
            allowed_tiers=tuple(p.allowed_tiers),
            project=p.project,
        )

    async def headroom(self, key_id: str, project: str) -> float:
        resp = await _call(
            "ledger",
            self._stub.GetHeadroom,
            ledger_pb2.GetHeadroomRequest(key_id=key_id, project=project),
            LEDGER_TIMEOUT_S,
        )
        return float(resp.min_remaining_fraction) if resp.budgets else 1.0

    async def authorize(
        self,
        *,
        key_id: str,
        tier: str,
        model: str,
        prompt_tokens: int,
        max_tokens: int,
        project: str,
        request_id: str,
    ) -> Reservation:
        req = ledger_pb2.AuthorizeRequest(
            key_id=key_id,
            tier=tier,
            model=model,
            estimated_prompt_tokens=prompt_tokens,
            max_completion_tokens=max_tokens,
            project=project,
            request_id=request_id,
        )
        resp = await _call("ledger", self._stub.Authorize, req, LEDGER_TIMEOUT_S)
        return Reservation(resp.reservation_id, resp.held.nano_usd, resp.min_remaining_fraction, resp.replayed)

    async def commit(
        self,
        *,
        reservation_id: str,
        key_id: str,
        prompt_tokens: int,
        completion_tokens: int,
        model: str,
        tier: str,
        latency_ms: int,
        fallbacks: int,
        bill_late: bool = True,
        finish_note: str = "",
    ) -> Charge:
        req = ledger_pb2.CommitRequest(
            reservation_id=reservation_id,
            key_id=key_id,
            usage=_usage(prompt_tokens, completion_tokens),
            model=model,
            tier=tier,
            latency_ms=latency_ms,
            fallbacks=fallbacks,
            bill_late=bill_late,
            finish_note=finish_note,
        )
        resp = await _call("ledger", self._stub.Commit, req, LEDGER_TIMEOUT_S)
        return Charge(resp.event.cost.nano_usd, resp.event.counterfactual_cost.nano_usd)

    async def release(self, *, reservation_id: str, key_id: str, reason: str) -> None:
        req = ledger_pb2.ReleaseRequest(reservation_id=reservation_id, key_id=key_id, reason=reason)
        await _call("ledger", self._stub.Release, req, LEDGER_TIMEOUT_S)

    async def record_cache_hit(
        self,
        *,
        key_id: str,
        request_id: str,
        project: str,
        tier: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        latency_ms: int,
        record_id: str = "",
        served: bool = False,
    ) -> Charge:
        req = ledger_pb2.RecordCacheHitRequest(
            key_id=key_id,
            request_id=request_id,
            project=project,
            tier=tier,
            model=model,
            usage=_usage(prompt_tokens, completion_tokens),
            latency_ms=latency_ms,
            record_id=record_id,
            served=served,
        )
        # replayed=true means this very record already landed (our own
        # retry): success. Another answer's reuse of the request id is
        # ALREADY_EXISTS from the ledger.
        resp = await _call("ledger", self._stub.RecordCacheHit, req, LEDGER_TIMEOUT_S)
        return Charge(resp.event.cost.nano_usd, resp.event.counterfactual_cost.nano_usd)

    async def reference_price(self) -> tuple[int, int]:
        resp = await _call("ledger", self._stub.ListPrices, ledger_pb2.ListPricesRequest(), LEDGER_TIMEOUT_S)
        for price in resp.prices:
            if price.is_reference:
                return price.input_per_million.nano_usd, price.output_per_million.nano_usd
        return 0, 0


def _usage(prompt: int, completion: int) -> common_pb2.Usage:
    return common_pb2.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _context(ctx: dict[str, object]) -> cache_pb2.CacheContext:
    return cache_pb2.CacheContext(
        tier_class=str(ctx.get("tier_class", "")),
        system_prompt=str(ctx.get("system_prompt", "")),
        max_tokens=int(str(ctx.get("max_tokens", 0))),
        params_digest=str(ctx.get("params_digest", "")),
    )


class GrpcCache:
    def __init__(self, channel: grpc.aio.Channel, min_similarity: float = 0.0) -> None:
        self._stub = cache_pb2_grpc.CacheServiceStub(channel)
        self._min_similarity = min_similarity

    async def lookup(
        self,
        *,
        tenant: str,
        text: str,
        vector: npt.NDArray[np.float32],
        context: dict[str, object],
        exact_only: bool = False,
        request_id: str = "",
        key_id: str = "",
    ) -> CachedAnswer | None:
        req = cache_pb2.LookupRequest(
            tenant=tenant,
            text=text,
            vector=[] if exact_only else vector.tolist(),
            context=_context(context),
            min_similarity=self._min_similarity,
            exact_only=exact_only,
            request_id=request_id,
            key_id=key_id,
        )
        try:
            resp = await _call("cache", self._stub.Lookup, req, CACHE_TIMEOUT_S)
        except NotFound:
            return None  # a tenant with nothing cached yet: a miss
        if not resp.hit:
            return None
        md = resp.metadata
        return CachedAnswer(
            answer=resp.answer,
            tier=md.tier,
            model=md.model,
            similarity=resp.similarity,
            exact=resp.match_kind == cache_pb2.MATCH_KIND_EXACT,
            prompt_tokens=md.prompt_tokens,
            completion_tokens=md.completion_tokens,
        )

    async def report_wrong_hit(self, *, tenant: str, key_id: str, request_id: str) -> WrongHitReport:
        req = cache_pb2.ReportWrongHitRequest(tenant=tenant, key_id=key_id, request_id=request_id)
        resp = await _call("cache", self._stub.ReportWrongHit, req, CACHE_TIMEOUT_S)
        return WrongHitReport(entry_id=resp.entry_id, evicted=resp.evicted, already_reported=resp.already_reported)

    async def store(
        self,
        *,
        tenant: str,
        text: str,
        vector: npt.NDArray[np.float32],
        context: dict[str, object],
        answer: str,
        tier: str,
        model: str,
        cost_nano_usd: int,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        req = cache_pb2.StoreRequest(
            tenant=tenant,
            text=text,
            vector=vector.tolist(),
            context=_context(context),
            answer=answer,
            metadata=cache_pb2.EntryMetadata(
                model=model,
                tier=tier,
                saved_nano_usd=cost_nano_usd,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            ),
        )
        await _call("cache", self._stub.Store, req, CACHE_TIMEOUT_S)
