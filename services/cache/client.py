"""The cache service's one gRPC client: the router, the CLI, the benches and the tests use it.

Plain dataclasses in and out, gRPC errors mapped back to ``rationer.errors``.
Each call forwards the request id and principal of the call being served
(``call_metadata``) unless the caller names its own, so logs join up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from rationer import errors
from rationer.api.cache.v1 import cache_pb2, cache_pb2_grpc
from rationer.platform.client import call_metadata, domain_error, internal_channel
from rationer.platform.interceptor import PRINCIPAL_KEY, REQUEST_ID_KEY
from services.cache.types import CacheContext, CacheStats, EntryMetadata, LookupResult, StoreResult, WrongHitResult

VectorLike = npt.NDArray[np.float32] | Sequence[float] | None

_KIND = {cache_pb2.MATCH_KIND_EXACT: "exact", cache_pb2.MATCH_KIND_SEMANTIC: "semantic"}


def _domain_error(exc: grpc.aio.AioRpcError) -> errors.RationerError:
    return domain_error(exc, service="cache")


def _vec(vector: VectorLike) -> list[float]:
    if vector is None:
        return []
    out: list[float] = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
    return out


def _ctx(context: CacheContext | None) -> cache_pb2.CacheContext:
    c = context or CacheContext()
    return cache_pb2.CacheContext(
        tier_class=c.tier_class, system_prompt=c.system_prompt, max_tokens=c.max_tokens,
        params_digest=c.params_digest,
    )  # fmt: skip


class CacheClient:
    """``async with CacheClient("127.0.0.1:50052", service_token=t) as cache: await cache.lookup(...)``.

    Every RPC needs the deployment's service token (a channel passed in
    brings its own, and stays the caller's to close)."""

    def __init__(self, target: str | grpc.aio.Channel, *, timeout_s: float = 2.0, service_token: str = "") -> None:
        self._own = isinstance(target, str)
        self._channel = internal_channel(target, service_token) if isinstance(target, str) else target
        self._stub = cache_pb2_grpc.CacheServiceStub(self._channel)
        self._timeout_s = timeout_s

    async def __aenter__(self) -> CacheClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own:
            await self._channel.close(None)

    async def _call(self, method: Any, request: Any, request_id: str, principal: str) -> Any:
        md = dict(call_metadata())
        md.update((k, v) for k, v in ((REQUEST_ID_KEY, request_id), (PRINCIPAL_KEY, principal)) if v)
        try:
            return await method(request, timeout=self._timeout_s, metadata=tuple(md.items()))
        except grpc.aio.AioRpcError as exc:
            raise _domain_error(exc) from exc

    async def lookup(
        self,
        tenant: str,
        text: str,
        vector: VectorLike = None,
        *,
        context: CacheContext | None = None,
        min_similarity: float = 0.0,
        exact_only: bool = False,
        disable_guard: bool = False,
        request_id: str = "",
        principal: str = "",
        key_id: str = "",
    ) -> LookupResult:
        """With ``key_id`` (and ``request_id``), a hit can later be reported wrong by that key.
        ``exact_only`` asks for the exact match alone (no vector is sent)."""
        req = cache_pb2.LookupRequest(
            tenant=tenant, text=text, vector=[] if exact_only else _vec(vector), context=_ctx(context),
            min_similarity=min_similarity, exact_only=exact_only, disable_guard=disable_guard,
            request_id=request_id if key_id else "", key_id=key_id,
        )  # fmt: skip
        resp = await self._call(self._stub.Lookup, req, request_id, principal)
        meta = None
        if resp.HasField("metadata"):
            m = resp.metadata
            meta = EntryMetadata(
                model=m.model, tier=m.tier, created_at=m.created_at.ToNanoseconds() / 1e9,
                saved_nano_usd=m.saved_nano_usd, prompt_tokens=m.prompt_tokens,
                completion_tokens=m.completion_tokens,
            )  # fmt: skip
        return LookupResult(
            hit=resp.hit, entry_id=resp.entry_id, answer=resp.answer, metadata=meta,
            similarity=resp.similarity, match_kind=_KIND.get(resp.match_kind, ""),  # type: ignore[arg-type]
            guard_rejection=resp.guard_rejection,
        )  # fmt: skip

    async def store(
        self,
        tenant: str,
        text: str,
        answer: str,
        vector: VectorLike = None,
        *,
        context: CacheContext | None = None,
        metadata: EntryMetadata | None = None,
        ttl_s: float = 0.0,
        request_id: str = "",
        principal: str = "",
    ) -> StoreResult:
        m = metadata or EntryMetadata()
        req = cache_pb2.StoreRequest(
            tenant=tenant, text=text, answer=answer, vector=_vec(vector), context=_ctx(context),
            metadata=cache_pb2.EntryMetadata(
                model=m.model, tier=m.tier, saved_nano_usd=m.saved_nano_usd,
                prompt_tokens=m.prompt_tokens, completion_tokens=m.completion_tokens,
            ),
        )  # fmt: skip
        # Duration seconds and nanos must share a sign; a negative TTL is sent
        # as such so the service can reject it.
        whole = int(ttl_s)
        req.ttl.seconds, req.ttl.nanos = whole, round((ttl_s - whole) * 1e9)
        resp = await self._call(self._stub.Store, req, request_id, principal)
        return StoreResult(entry_id=resp.entry_id, evicted=resp.evicted)

    async def invalidate(
        self, *, tenant: str = "", entry_id: str = "", everything: bool = False, request_id: str = ""
    ) -> int:
        req = cache_pb2.InvalidateRequest(tenant=tenant)
        if entry_id:
            req.entry_id = entry_id
        elif everything:
            req.all = True
        resp = await self._call(self._stub.Invalidate, req, request_id, "")
        return int(resp.removed)

    async def stats(self, tenant: str = "") -> CacheStats:
        resp = await self._call(self._stub.Stats, cache_pb2.StatsRequest(tenant=tenant), "", "")
        return CacheStats(
            entries=resp.entries, tenants=resp.tenants, hits=resp.hits, misses=resp.misses,
            guard_rejections=resp.guard_rejections, evictions=resp.evictions, wrong_hits=resp.wrong_hits,
        )  # fmt: skip

    async def report_wrong_hit(self, tenant: str, key_id: str, request_id: str) -> WrongHitResult:
        req = cache_pb2.ReportWrongHitRequest(tenant=tenant, key_id=key_id, request_id=request_id)
        resp = await self._call(self._stub.ReportWrongHit, req, "", "")
        return WrongHitResult(entry_id=resp.entry_id, evicted=resp.evicted, already_reported=resp.already_reported)
