"""The core's ledger and cache ports, as thin mappings over those services' clients.

``LedgerClient`` and ``CacheClient`` own the wire (protos, metadata,
timeouts, gRPC errors mapped to domain errors); these adapters only reshape
their results into the router's values and keep the router's two local
rules: a cache tenant with nothing stored is a miss, and an empty headroom
answer (no budget on the path) is full headroom.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt

from rationer.errors import NotFound
from rationer.platform.identity import Principal, Reservation
from services.cache.client import CacheClient
from services.cache.types import CacheContext, EntryMetadata
from services.ledger.calls import CacheHitCall, CommitCall
from services.ledger.client import LedgerClient
from services.ledger.models import Price, UsageEvent
from services.router.types import CachedAnswer, Charge, WrongHitReport


def _charge(event: UsageEvent) -> Charge:
    return Charge(event.cost, event.counterfactual_cost)


class GrpcLedger:
    def __init__(self, client: LedgerClient) -> None:
        self.client = client

    async def authenticate(self, api_key: str) -> Principal:
        p = await self.client.authenticate(api_key)
        # A ledger that predates tenancy sends no tenant: the org is one.
        return p if p.tenant else replace(p, tenant=p.org_id)

    async def headroom(self, key_id: str, project: str) -> float:
        r = await self.client.headroom(key_id, project)
        return float(r.min_remaining_fraction) if r.budgets else 1.0

    async def authorize(
        self,
        *,
        key_id: str,
        tier: str,
        model: str,
        prompt_tokens: int,
        max_completion_tokens: int,
        project: str,
        request_id: str,
    ) -> Reservation:
        r = await self.client.authorize(
            key_id, tier, prompt_tokens=prompt_tokens, max_completion_tokens=max_completion_tokens, model=model,
            project=project, request_id=request_id,
        )  # fmt: skip
        return Reservation(r.reservation_id, r.held_nano_usd, r.min_remaining_fraction, r.replayed)

    async def commit(self, call: CommitCall) -> Charge:
        return _charge((await self.client.commit(call)).event)

    async def release(self, *, reservation_id: str, key_id: str, reason: str) -> None:
        await self.client.release(reservation_id, key_id, reason)

    async def record_cache_hit(self, call: CacheHitCall) -> Charge:
        return _charge(await self.client.record_cache_hit(call))

    async def record_wrong_hit(self, *, key_id: str, request_id: str) -> None:
        await self.client.record_wrong_hit(key_id, request_id)

    def connected(self) -> bool:
        return self.client.connected()

    async def prices(self) -> list[Price]:
        return await self.client.list_prices()

    async def reference_price(self, tier: str | None = None) -> tuple[int, int]:
        """The price of the reference ``tier`` ("": none, so (0, 0); None: the ledger's is_reference one)."""
        for price in await self.client.list_prices():
            if price.tier == tier if tier is not None else price.is_reference:
                return price.input_per_million, price.output_per_million
        return 0, 0


def _context(ctx: dict[str, object]) -> CacheContext:
    return CacheContext(
        tier_class=str(ctx.get("tier_class", "")),
        system_prompt=str(ctx.get("system_prompt", "")),
        max_tokens=int(str(ctx.get("max_tokens", 0))),
        params_digest=str(ctx.get("params_digest", "")),
    )


class GrpcCache:
    def __init__(self, client: CacheClient, min_similarity: float = 0.0) -> None:
        self.client = client
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
        try:
            r = await self.client.lookup(
                tenant, text, vector, context=_context(context), min_similarity=self._min_similarity,
                exact_only=exact_only, request_id=request_id, key_id=key_id,
            )  # fmt: skip
        except NotFound:
            return None  # a tenant with nothing cached yet: a miss
        if not r.hit:
            return None
        md = r.metadata or EntryMetadata()
        return CachedAnswer(
            answer=r.answer,
            tier=md.tier,
            model=md.model,
            similarity=r.similarity,
            exact=r.match_kind == "exact",
            prompt_tokens=md.prompt_tokens,
            completion_tokens=md.completion_tokens,
        )

    async def report_wrong_hit(self, *, tenant: str, key_id: str, request_id: str) -> WrongHitReport:
        r = await self.client.report_wrong_hit(tenant, key_id, request_id)
        return WrongHitReport(entry_id=r.entry_id, evicted=r.evicted, already_reported=r.already_reported)

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
        meta = EntryMetadata(model=model, tier=tier, saved_nano_usd=cost_nano_usd, prompt_tokens=prompt_tokens,
                             completion_tokens=completion_tokens)  # fmt: skip
        await self.client.store(tenant, text, answer, vector, context=_context(context), metadata=meta)
