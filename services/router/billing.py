"""The settle stage: what a call is billed, through the journaled Settler, and what the cache keeps.

Every answer is one ledger event: a commit of the call's true usage, or a
cache-hit record. Both are typed records (``services/ledger/calls.py``)
journaled before the first attempt, so an answer the ledger could not take
yet is still billed, later.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog

from rationer.errors import RationerError, ResourceExhausted
from services.ledger.calls import CacheHitCall, CommitCall, prompt_text
from services.router.holds import Holds, Spawn
from services.router.policy import TierSpec
from services.router.ports import CachePort
from services.router.pricing import PriceBook
from services.router.recorder import NULL_RECORDER, Recorder
from services.router.reference import Reference
from services.router.settlement import TRANSIENT, Settler, best_effort
from services.router.types import Charge, Completion, Prepared, Reservation, RouteResult

log = structlog.get_logger(__name__)


class Billing:
    def __init__(
        self, settler: Settler, holds: Holds, prices: PriceBook, cache: CachePort | None, spawn: Spawn,
        reference: Reference | None = None,
        recorder: Recorder = NULL_RECORDER,
    ) -> None:  # fmt: skip
        self._settler, self._holds, self._prices = settler, holds, prices
        self._cache, self._spawn, self._recorder = cache, spawn, recorder
        # None: the ledger's is_reference price on the served usage (callers that configure none).
        self._reference = reference

    async def _counterfactual(
        self, prep: Prepared, answer: str, tier: str, prompt: int, completion: int
    ) -> dict[str, Any]:
        """The reference fields of a settlement record (reference.py)."""
        if self._reference is None:
            return {}
        p, c = await self._reference.usage(prep.request.messages, answer, tier, prompt, completion)
        return {"reference_tier": self._reference.tier, "reference_prompt_tokens": p,
                "reference_completion_tokens": c}  # fmt: skip

    async def serve_hit(self, prep: Prepared) -> tuple[str, RouteResult]:
        """Record a cache hit with the ledger, then serve it (each answer one event).

        The record is inline so the key's rate limits apply to hits too: a
        limit that is used up (RESOURCE_EXHAUSTED), or a request id this key
        already used (ALREADY_EXISTS), is the caller's answer instead of the
        cached text. The record is journaled first, so if the ledger cannot
        be reached the answer is still served and the drainer records it.
        """
        hit = prep.cached
        assert hit is not None
        res = prep.result
        res.cache_hit = True
        res.tier, res.model = hit.tier, hit.model
        res.prompt_tokens, res.completion_tokens = hit.prompt_tokens, hit.completion_tokens
        res.cost_nano_usd = 0
        ref = await self._counterfactual(prep, hit.answer, hit.tier, hit.prompt_tokens, hit.completion_tokens)
        res.savings_nano_usd = self._prices.counterfactual(
            ref.get("reference_prompt_tokens", hit.prompt_tokens),
            ref.get("reference_completion_tokens", hit.completion_tokens),
        )
        started = time.perf_counter()
        call = CacheHitCall(
            key_id=prep.principal.key_id,
            request_id=prep.request_id,
            project=prep.request.project,
            tier=hit.tier,
            model=hit.model,
            prompt_tokens=hit.prompt_tokens,
            completion_tokens=hit.completion_tokens,
            latency_ms=int((started - prep.started) * 1000),
            # This answer's own id: retries of the record land once, while a
            # second answer under the same request id is a second record.
            record_id=uuid.uuid4().hex,
            status_code=200,
            prompt_text=_logged_prompt(prep),
            **ref,
        )
        try:
            await self._settler.settle(call)
        except ResourceExhausted as exc:
            self._recorder.denied(prep.principal, hit.tier, exc.limit_id)
            raise
        except TRANSIENT:
            res.settlement_pending = True  # journaled; the drainer records it
        res.add_stage("settle", started)
        res.gateway_overhead_ms = (time.perf_counter() - prep.started) * 1000
        self._recorder.cache_hit(prep)
        return hit.answer, res

    async def commit(
        self, prep: Prepared, res: Reservation, tier: TierSpec, out: Completion, *, exact: bool = True,
        finish_note: str = "",
    ) -> None:  # fmt: skip
        """Commit the answer's usage against its hold and fill the result's billing fields."""
        result = prep.result
        await _read_headroom(prep)
        prompt, completion = out.prompt_tokens, out.completion_tokens
        if not exact:
            # The upstream did not report usage: bill the hold's token maximum.
            prompt = await self._holds.prompt_tokens(prep, tier)
            completion = prep.request.params.max_tokens
            result.usage_exact = False
        elif completion > prep.request.params.max_tokens:
            # The hold covered max_tokens only. The provider bills what it
            # reports, so the commit says so; the ledger never takes a hard
            # limit past its limit (docs/ledger.md).
            log.warning("the upstream reported more completion tokens than max_tokens", tier=tier.name,
                        completion_tokens=completion, max_tokens=prep.request.params.max_tokens)  # fmt: skip
        settle_started = time.perf_counter()
        call = CommitCall(
            reservation_id=res.reservation_id,
            key_id=prep.principal.key_id,
            prompt_tokens=prompt,
            completion_tokens=completion,
            model=out.model or tier.model,
            tier=tier.name,
            latency_ms=int((settle_started - prep.started) * 1000),
            fallbacks=len(result.fallbacks),
            # The model has answered: bill it even if the hold expired meanwhile.
            bill_late=True,
            finish_note=finish_note,
            **await self._counterfactual(prep, out.text, tier.name, prompt, completion),
            # Exact usage only: a billed maximum has no cache split.
            cache_read_tokens=out.cache_read_tokens if exact else 0,
            cache_creation_tokens=out.cache_creation_tokens if exact else 0,
            # What the caller got: the whole answer, or a stream cut short (499, as nginx logs it).
            status_code=499 if finish_note else 200,
            prompt_text=_logged_prompt(prep),
        )
        self._recorder.hold_closed(res)  # from here the journaled commit owns it
        charge = await self._settle_commit(call, res.held_nano_usd)
        result.settlement_pending = charge is None
        result.add_stage("settle", settle_started)
        result.tier, result.model = tier.name, out.model or tier.model
        result.prompt_tokens, result.completion_tokens = prompt, completion
        result.finish_reason = out.finish_reason
        result.model_ms = out.model_ms
        if charge is not None:
            result.cost_nano_usd = charge.cost_nano_usd
            result.savings_nano_usd = charge.counterfactual_nano_usd - charge.cost_nano_usd
        result.gateway_overhead_ms = max((time.perf_counter() - prep.started) * 1000 - out.model_ms, 0.0)
        self._recorder.settled(prep, tier, charge)

    async def _settle_commit(self, call: CommitCall, held: int) -> Charge | None:
        """The commit's charge; None when the ledger has not confirmed it yet (journaled, it lands later).

        With the tier's price in the book, a cost within the hold (the ledger
        then bills it uncapped) and the ledger reachable, the answer does not
        wait for the ledger: the journal row written now makes the commit
        durable (the next run replays it after a crash), and the charge is the
        ledger's own formula (``sql/data.py`` commit, ``sql/reference.py``).
        """
        cost = self._prices.cost(call.tier, call.prompt_tokens, call.completion_tokens,
                                 cache_read=call.cache_read_tokens,
                                 cache_creation=call.cache_creation_tokens)  # fmt: skip
        # reference_tier None: the ledger's is_reference price, which this book may not hold.
        if cost is not None and cost <= held and call.reference_tier is not None and self._settler.can_detach():
            self._settler.settle_detached(call)
            counterfactual = cost
            if call.reference_tier:  # never a negative saving, as the ledger
                ref = self._prices.counterfactual(call.reference_prompt_tokens, call.reference_completion_tokens)
                counterfactual = max(ref, cost)
            return Charge(cost, counterfactual)
        try:
            return await self._settler.settle(call)
        except TRANSIENT:
            # The model already answered: give the caller the answer; the
            # journaled commit lands when the ledger is back.
            return None

    def store_answer(self, prep: Prepared, tier: TierSpec, text: str) -> None:
        """Keep a billed answer in the cache, in the background (best effort)."""
        if not prep.cacheable or self._cache is None or not text:
            return
        res = prep.result
        self._spawn(
            best_effort(
                self._cache.store(
                    tenant=prep.principal.tenant,
                    text=prep.text,
                    vector=prep.vector,
                    context=prep.cache_context,
                    answer=text,
                    tier=tier.name,
                    model=res.model,
                    cost_nano_usd=res.cost_nano_usd,
                    prompt_tokens=res.prompt_tokens,
                    completion_tokens=res.completion_tokens,
                ),
                "cache store",
            )
        )


def _logged_prompt(prep: Prepared) -> str:
    """The prompt for the ledger's Requests log, only for orgs that turned prompt logging on."""
    return prompt_text(prep.request.messages) if prep.principal.log_prompts else ""


async def _read_headroom(prep: Prepared) -> None:
    """The budget headroom the look-up left in flight (lookup.py); an answered call keeps 1.0 if it failed."""
    if prep.headroom is None:
        return
    try:
        prep.result.budget_remaining_fraction = await prep.headroom
    except RationerError as exc:
        log.warning("budget headroom unavailable; reporting 1.0", error=exc.message)
    prep.headroom = None
