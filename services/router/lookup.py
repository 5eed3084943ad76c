"""The look-up stage: cache lookup, prompt embedding and budget headroom, ordered for the hit path."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from rationer.embedding.batcher import MicroBatcher
from rationer.errors import RationerError
from services.router.ports import CachePort, EmbedderPort, LedgerPort
from services.router.types import CachedAnswer, Prepared

log = structlog.get_logger(__name__)


class Lookup:
    def __init__(
        self, *, ledger: LedgerPort, cache: CachePort | None, embedder: EmbedderPort, batcher: MicroBatcher | None
    ) -> None:
        self._ledger, self._cache, self._embedder = ledger, cache, embedder
        # Coalesces the embeddings of concurrent requests into one ONNX call.
        self._batcher = batcher

    async def run(self, prep: Prepared, *, need_vector: bool) -> None:
        """Fill ``prep.cached``, ``prep.vector`` and the budget headroom.

        The exact-match lookup needs no vector, so it goes first: an exact hit
        answers without paying for the embedding (the costliest step, ~4 ms
        of CPU that would also slow every other request on the box). Headroom
        is fetched meanwhile. A caller that names its tier with the cache off
        needs no vector at all (complexity then reads 0).
        """
        need_vector = need_vector or prep.cacheable
        headroom = asyncio.ensure_future(self._headroom(prep))
        if not need_vector:
            # A named tier with the cache off: nothing before the hold reads
            # the headroom (a named tier's plan ignores budget pressure), so
            # its round trip overlaps the Authorize and the model call; the
            # settle stage reads it (billing.py).
            headroom.add_done_callback(_consume)
            prep.headroom = headroom
            return
        try:
            if prep.cacheable:
                prep.cached = await self._lookup(prep, exact_only=True)
                if prep.cached is not None:
                    return
            if need_vector:
                prep.vector = await self._embed(prep)
            if prep.cacheable:
                prep.cached = await self._lookup(prep, exact_only=False)
            prep.result.budget_remaining_fraction = await headroom
        finally:
            if not headroom.done():
                headroom.cancel()
                headroom.add_done_callback(_consume)

    async def _embed(self, prep: Prepared) -> npt.NDArray[np.float32]:
        started = time.perf_counter()
        try:
            if self._batcher is not None:
                return await self._batcher.embed(prep.text)
            return await asyncio.to_thread(self._embedder.embed_one, prep.text)
        finally:
            prep.result.add_stage("embed", started)

    async def _lookup(self, prep: Prepared, *, exact_only: bool) -> CachedAnswer | None:
        if not prep.cacheable or self._cache is None:
            return None
        started = time.perf_counter()
        try:
            return await self._cache.lookup(
                tenant=prep.principal.tenant,
                text=prep.text,
                vector=prep.vector,
                context=prep.cache_context,
                exact_only=exact_only,
                # so that this key can report the hit as wrong (POST /v1/cache/feedback)
                request_id=prep.request_id,
                key_id=prep.principal.key_id,
            )
        except RationerError as exc:
            # A cache outage must not take the gateway down: degrade to a miss.
            log.warning("cache lookup failed; treating as miss", error=str(exc))
            return None
        finally:
            prep.result.add_stage("cache", started)

    async def _headroom(self, prep: Prepared) -> float:
        started = time.perf_counter()
        try:
            return await self._ledger.headroom(prep.principal.key_id, prep.request.project)
        finally:
            prep.result.add_stage("headroom", started)


def _consume(task: asyncio.Future[Any]) -> None:
    # A task abandoned on the hit path must not log "exception never retrieved".
    if not task.cancelled():
        task.exception()
