"""Thin gRPC adapter: proto <-> domain dataclasses; all logic is in SemanticCache."""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from rationer.api.cache.v1 import cache_pb2, cache_pb2_grpc
from services.cache.cache import SemanticCache
from services.cache.types import CacheContext, EntryMetadata, LookupQuery, StoreCommand

_MATCH = {
    "": cache_pb2.MATCH_KIND_UNSPECIFIED,
    "exact": cache_pb2.MATCH_KIND_EXACT,
    "semantic": cache_pb2.MATCH_KIND_SEMANTIC,
}


def _context(msg: cache_pb2.CacheContext) -> CacheContext:
    return CacheContext(msg.tier_class, msg.system_prompt, msg.max_tokens, msg.params_digest)


def _vector(values: Any) -> np.ndarray[Any, np.dtype[np.float32]] | None:
    return np.asarray(values, dtype=np.float32) if len(values) else None


def _metadata_in(msg: cache_pb2.EntryMetadata) -> EntryMetadata:
    return EntryMetadata(
        model=msg.model,
        tier=msg.tier,
        saved_nano_usd=msg.saved_nano_usd,
        prompt_tokens=msg.prompt_tokens,
        completion_tokens=msg.completion_tokens,
    )


def _metadata_out(meta: EntryMetadata) -> cache_pb2.EntryMetadata:
    created = Timestamp()
    created.FromNanoseconds(int(meta.created_at * 1e9))
    return cache_pb2.EntryMetadata(
        model=meta.model,
        tier=meta.tier,
        created_at=created,
        saved_nano_usd=meta.saved_nano_usd,
        prompt_tokens=meta.prompt_tokens,
        completion_tokens=meta.completion_tokens,
    )


class CacheServicer(cache_pb2_grpc.CacheServiceServicer):
    def __init__(self, cache: SemanticCache) -> None:
        self._cache = cache

    async def Lookup(self, request: cache_pb2.LookupRequest, context: Any) -> cache_pb2.LookupResponse:
        result = await self._cache.lookup(
            LookupQuery(
                tenant=request.tenant,
                text=request.text,
                vector=_vector(request.vector),
                context=_context(request.context),
                min_similarity=request.min_similarity,
                disable_guard=request.disable_guard,
                exact_only=request.exact_only,
                request_id=request.request_id,
                key_id=request.key_id,
            )
        )
        return cache_pb2.LookupResponse(
            hit=result.hit,
            entry_id=result.entry_id,
            answer=result.answer,
            metadata=_metadata_out(result.metadata) if result.metadata is not None else None,
            similarity=result.similarity,
            match_kind=_MATCH[result.match_kind],
            guard_rejection=result.guard_rejection,
        )

    async def Store(self, request: cache_pb2.StoreRequest, context: Any) -> cache_pb2.StoreResponse:
        # Duration seconds and nanos share a sign; a negative TTL stays negative.
        ttl_s = request.ttl.seconds + request.ttl.nanos / 1e9
        result = await self._cache.store(
            StoreCommand(
                tenant=request.tenant,
                text=request.text,
                answer=request.answer,
                vector=_vector(request.vector),
                context=_context(request.context),
                metadata=_metadata_in(request.metadata),
                ttl_s=ttl_s,
            )
        )
        return cache_pb2.StoreResponse(entry_id=result.entry_id, evicted=result.evicted)

    async def Invalidate(self, request: cache_pb2.InvalidateRequest, context: Any) -> cache_pb2.InvalidateResponse:
        target = request.WhichOneof("target")
        removed = await self._cache.invalidate(
            tenant=request.tenant,
            entry_id=request.entry_id if target == "entry_id" else "",
            everything=target == "all" and request.all,
        )
        return cache_pb2.InvalidateResponse(removed=removed)

    async def Stats(self, request: cache_pb2.StatsRequest, context: Any) -> cache_pb2.StatsResponse:
        s = await self._cache.stats(request.tenant)
        return cache_pb2.StatsResponse(
            entries=s.entries,
            tenants=s.tenants,
            hits=s.hits,
            misses=s.misses,
            guard_rejections=s.guard_rejections,
            evictions=s.evictions,
            wrong_hits=s.wrong_hits,
        )

    async def ReportWrongHit(
        self, request: cache_pb2.ReportWrongHitRequest, context: Any
    ) -> cache_pb2.ReportWrongHitResponse:
        r = await self._cache.report_wrong_hit(request.tenant, request.key_id, request.request_id)
        return cache_pb2.ReportWrongHitResponse(
            entry_id=r.entry_id, evicted=r.evicted, already_reported=r.already_reported
        )
