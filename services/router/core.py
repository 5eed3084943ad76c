"""The router core: one plain class behind both the gRPC servicer and HTTP.

Request path: authenticate -> embed once -> cache -> score -> choose tier ->
reserve -> call model -> settle -> respond. Every failure after a hold is
placed either commits true usage or releases the hold, so no reservation
leaks and no call is billed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from rationer.embedding.batcher import MicroBatcher
from rationer.errors import (
    AlreadyExists,
    DeadlineExceeded,
    RationerError,
    ResourceExhausted,
)
from rationer.platform.clock import SYSTEM_CLOCK, Clock
from services.router.attempts import Attempts
from services.router.auth import AuthCache, resolve_project
from services.router.call_state import (
    FALLBACK_ERRORS,
    CacheablePolicy,
    Canonicalize,
    ContextOf,
    CoreConfig,
    Prepared,
)
from services.router.journal import SettlementJournal
from services.router.model_types import Completion
from services.router.policy import TierPolicy, TierSpec
from services.router.ports import (
    CachedAnswer,
    CachePort,
    Charge,
    EmbedderPort,
    LedgerPort,
    Reservation,
    ScorerPort,
)
from services.router.pricing import PriceBook
from services.router.requests import (
    CompletionRequest,
    RequestLimits,
    RouteResult,
    validate,
)
from services.router.settlement import TRANSIENT, Settler, best_effort, retry_settlement, settle_later
from services.router.tokens import ByteBound, TokenCounter, count_prompt

log = structlog.get_logger(__name__)


class RouterCore:
    def __init__(
        self,
        *,
        ledger: LedgerPort,
        cache: CachePort | None,
        embedder: EmbedderPort,
        scorer: ScorerPort,
        policy: TierPolicy,
        backends: Mapping[str, Any],
        prices: PriceBook,
        canonicalize: Canonicalize,
        cache_context: ContextOf,
        cacheable: CacheablePolicy,
        limits: RequestLimits | None = None,
        config: CoreConfig | None = None,
        auth_ttl_s: float = 5.0,
        batcher: MicroBatcher | None = None,
        journal: SettlementJournal | None = None,
        clock: Clock = SYSTEM_CLOCK,
        counters: Mapping[str, TokenCounter] | None = None,
    ) -> None:
        # The router's one wall clock (retry headers, timestamps); deadlines
        # use time.monotonic, which no date can move.
        self.clock = clock
        self.ledger = ledger
        self.cache = cache
        self.embedder = embedder
        self.scorer = scorer
        self.policy = policy
        self.backends = backends
        # Per tier: how a hold's prompt tokens are counted (tokens.py). A tier
        # without one gets the byte bound with the default template allowance.
        self.counters: Mapping[str, TokenCounter] = counters or {}
        self._bound = ByteBound()
        self.prices = prices
        self.canonicalize = canonicalize
        self.cache_context = cache_context
        self.cacheable = cacheable
        self.limits = limits or RequestLimits()
        self.config = config or CoreConfig()
        self.auth = AuthCache(ledger, ttl_s=auth_ttl_s)
        # Coalesces the embeddings of concurrent requests into one ONNX call.
        self.batcher = batcher
        # Every commit and cache-hit record passes through its journal.
        self.journal = journal if journal is not None else SettlementJournal(clock=clock)
        self.settler = Settler(ledger, self.journal, self.spawn, max_backoff_s=self.config.settle_max_backoff_s)
        self._background: set[asyncio.Task[Any]] = set()

    # ---- shared preparation -------------------------------------------------

    async def prepare(
        self, api_key: str, raw: CompletionRequest, *, request_id: str = "", deadline: float | None = None
    ) -> Prepared:
        started = time.perf_counter()
        if deadline is not None and deadline - time.monotonic() < self.config.min_deadline_s:
            raise DeadlineExceeded(
                f"deadline leaves under {self.config.min_deadline_s * 1000:.0f} ms; "
                "nothing useful can run in that time. Raise the client timeout"
            )
        auth_started = time.perf_counter()
        async with _within(deadline, "authenticating the key"):
            principal = await self.auth.principal(api_key)
        auth_ms = (time.perf_counter() - auth_started) * 1000
        # Logs here and in every downstream service (via call metadata) name
        # the caller; the interceptor's context scope ends with the call.
        structlog.contextvars.bind_contextvars(
            principal=f"{principal.org_id}/{principal.team_id}/{principal.user_id}/{principal.key_id}"
        )
        req = validate(raw, self.limits)
        # A key bound to a project bills every request there (docs/http.md).
        req = dataclasses.replace(req, project=resolve_project(principal, req.project))
        # Before the cache: a key must not get, even from its own tenant's
        # cache, an answer from a tier it may not use.
        self.policy.check_access(req.model, principal.allowed_tiers)
        rid = request_id or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=rid, end_user=req.user or None)
        prep = Prepared(
            principal=principal,
            request=req,
            request_id=rid,
            started=started,
            deadline=deadline,
            text=self.canonicalize(req.messages),
            vector=np.zeros(0, dtype=np.float32),
            cache_context=self.cache_context(req),
            cacheable=self.cache is not None and self.config.cache_enabled and self.cacheable(req),
            result=RouteResult(request_id=rid),
        )
        prep.result.stage_ms["auth"] = auth_ms
        async with _within(deadline, "looking up the cache and embedding the prompt"):
            await self._look_and_embed(prep)
        if prep.cached is not None:
            return prep
        classify_started = time.perf_counter()
        score = float(self.scorer.score(prep.vector, prep.text)) if prep.vector.size else 0.0
        prep.result.complexity = score
        prep.decision = self.policy.decide(
            score,
            allowed_tiers=principal.allowed_tiers,
            requested=req.model,
            healthy=self._healthy_tiers(),
            remaining_fraction=prep.result.budget_remaining_fraction,
        )
        prep.result.downgraded = prep.decision.downgraded
        prep.result.add_stage("classify", classify_started)
        return prep

    async def _look_and_embed(self, prep: Prepared) -> None:
        """Cache lookup, embedding and budget headroom, ordered for the hit path.

        The exact-match lookup needs no vector, so it goes first: an exact hit
        answers without paying for the embedding (the costliest step, ~4 ms
        of CPU that would also slow every other request on the box). Headroom
        is fetched meanwhile. A caller that names its tier with the cache off
        needs no vector at all (complexity then reads 0).
        """
        need_vector = prep.cacheable or self.policy.resolve(prep.request.model) is None
        headroom = asyncio.ensure_future(self._headroom(prep))
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
            if self.batcher is not None:
                return await self.batcher.embed(prep.text)
            return await asyncio.to_thread(self.embedder.embed_one, prep.text)
        finally:
            prep.result.add_stage("embed", started)

    async def _lookup(self, prep: Prepared, *, exact_only: bool) -> CachedAnswer | None:
        if not prep.cacheable or self.cache is None:
            return None
        started = time.perf_counter()
        try:
            return await self.cache.lookup(
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
            return await self.ledger.headroom(prep.principal.key_id, prep.request.project)
        finally:
            prep.result.add_stage("headroom", started)

    def _healthy_tiers(self) -> frozenset[str]:
        return frozenset(t.name for t in self.policy.tiers if self._backend(t).healthy(t.model))

    def _backend(self, tier: TierSpec) -> Any:
        return self.backends[tier.name]

    # ---- cache hits -------------------------------------------------------

    async def answer_from_cache(self, prep: Prepared) -> tuple[str, RouteResult]:
        """Serve a hit once the ledger has recorded it (each answer one event).

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
        res.savings_nano_usd = self.prices.counterfactual(hit.prompt_tokens, hit.completion_tokens)
        started = time.perf_counter()
        args = {
            "key_id": prep.principal.key_id,
            "request_id": prep.request_id,
            "project": prep.request.project,
            "tier": hit.tier,
            "model": hit.model,
            "prompt_tokens": hit.prompt_tokens,
            "completion_tokens": hit.completion_tokens,
            "latency_ms": int((started - prep.started) * 1000),
            # This answer's own id: retries of the record land once, while a
            # second answer under the same request id is a second record.
            "record_id": uuid.uuid4().hex,
        }
        try:
            await self.settler.settle("cache_hit", args)
        except TRANSIENT:
            res.settlement_pending = True  # journaled; the drainer records it
        res.add_stage("settle", started)
        res.gateway_overhead_ms = (time.perf_counter() - prep.started) * 1000
        return hit.answer, res

    # ---- reservations -----------------------------------------------------

    def attempts(self, prep: Prepared) -> Attempts:
        assert prep.decision is not None
        return Attempts(self, prep, [prep.decision.tier, *prep.decision.fallbacks])

    async def reserve(self, prep: Prepared, tier: TierSpec) -> Reservation:
        ledger_id = _attempt_id(prep, tier)
        prep.attempts += 1
        prep.tiers_tried.append(tier.name)
        started = time.perf_counter()
        placing = asyncio.ensure_future(self._authorize(prep, tier, ledger_id))
        try:
            # Shielded: a caller that goes away (or runs out of time)
            # mid-Authorize must not leave a hold until its TTL; it is
            # released once it is placed.
            async with _within(prep.deadline, "the ledger was placing the hold"):
                res = await asyncio.shield(placing)
        except (asyncio.CancelledError, DeadlineExceeded):
            self.spawn(self._release_once_placed(prep, placing))
            raise
        finally:
            prep.result.add_stage("authorize", started)
        if res.replayed:
            # The router never retries an Authorize, so a replay means another
            # call already used this id: serving this one would ride on that
            # call's hold and charge (a free answer). Its hold is not ours to
            # release either.
            raise AlreadyExists(
                f"request id {prep.request_id!r} was already used by another call; send a unique "
                "x-request-id per request, or none and the gateway makes one"
            )
        return res

    async def _release_once_placed(self, prep: Prepared, placing: asyncio.Future[Reservation]) -> None:
        try:
            res = await placing
        except Exception:
            return  # nothing was placed
        if not res.replayed:
            await self.release(prep, res, "the caller went away while the hold was being placed")

    def counter(self, tier: TierSpec) -> TokenCounter:
        return self.counters.get(tier.name, self._bound)

    async def hold_prompt_tokens(self, prep: Prepared, tier: TierSpec) -> int:
        """The prompt tokens a hold on ``tier`` is sized for: exact or a proven upper bound."""
        known = prep.hold_prompt.get(tier.name)
        if known is None:
            known = await count_prompt(self.counter(tier), prep.request.messages)
            prep.hold_prompt[tier.name] = known
        return known

    async def _authorize(self, prep: Prepared, tier: TierSpec, ledger_id: str) -> Reservation:
        return await self.ledger.authorize(
            key_id=prep.principal.key_id,
            tier=tier.name,
            model=tier.model,
            prompt_tokens=await self.hold_prompt_tokens(prep, tier),
            max_tokens=prep.request.params.max_tokens,
            project=prep.request.project,
            request_id=ledger_id,
        )

    def on_exhausted(self, prep: Prepared, tier: TierSpec, exc: ResourceExhausted) -> list[TierSpec]:
        """After a budget denial, the cheaper tiers worth trying (maybe none)."""
        if not self.config.downgrade_on_exhaustion or not exc.limit_id.startswith("budget"):
            return []
        cheaper = list(self.policy.cheaper_than(tier, prep.principal.allowed_tiers))
        healthy = self._healthy_tiers()
        return [t for t in cheaper if t.name in healthy]

    async def release(self, prep: Prepared, res: Reservation, reason: str) -> None:
        def op() -> Coroutine[Any, Any, None]:
            return self.ledger.release(
                reservation_id=res.reservation_id, key_id=prep.principal.key_id, reason=reason[:200]
            )

        try:
            await retry_settlement(op, what="release")
        except TRANSIENT:
            # A hold that is not released in time expires on its own; never
            # let a ledger blip stop the fallback to the next tier.
            self.spawn(settle_later(op, what="release", window_s=self.config.settle_retry_window_s))

    async def commit(
        self,
        prep: Prepared,
        res: Reservation,
        tier: TierSpec,
        out: Completion,
        *,
        exact: bool = True,
        finish_note: str = "",
    ) -> None:
        result = prep.result
        prompt, completion = out.prompt_tokens, out.completion_tokens
        if not exact:
            # The upstream did not report usage: bill the hold's token maximum.
            prompt = await self.hold_prompt_tokens(prep, tier)
            completion = prep.request.params.max_tokens
            result.usage_exact = False
        elif completion > prep.request.params.max_tokens:
            # The hold covered max_tokens only. The provider bills what it
            # reports, so the commit says so; the ledger never takes a hard
            # limit past its limit (docs/ledger.md).
            log.warning("the upstream reported more completion tokens than max_tokens", tier=tier.name,
                        completion_tokens=completion, max_tokens=prep.request.params.max_tokens)  # fmt: skip
        settle_started = time.perf_counter()
        args = {
            "reservation_id": res.reservation_id,
            "key_id": prep.principal.key_id,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "model": out.model or tier.model,
            "tier": tier.name,
            "latency_ms": int((settle_started - prep.started) * 1000),
            "fallbacks": len(result.fallbacks),
            # The model has answered: bill it even if the hold expired meanwhile.
            "bill_late": True,
        }
        if finish_note:
            args["finish_note"] = finish_note
        charge: Charge | None = None
        try:
            charge = await self.settler.settle("commit", args)
        except TRANSIENT:
            # The model already answered: give the caller the answer; the
            # journaled commit lands when the ledger is back.
            result.settlement_pending = True
        result.add_stage("settle", settle_started)
        result.tier, result.model = tier.name, out.model or tier.model
        result.prompt_tokens, result.completion_tokens = prompt, completion
        result.finish_reason = out.finish_reason
        result.model_ms = out.model_ms
        if charge is not None:
            result.cost_nano_usd = charge.cost_nano_usd
            result.savings_nano_usd = charge.counterfactual_nano_usd - charge.cost_nano_usd
        result.gateway_overhead_ms = max((time.perf_counter() - prep.started) * 1000 - out.model_ms, 0.0)

    def store_answer(self, prep: Prepared, tier: TierSpec, text: str) -> None:
        if not prep.cacheable or self.cache is None or not text:
            return
        cache, res = self.cache, prep.result
        self.spawn(
            best_effort(
                cache.store(
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

    # ---- unary --------------------------------------------------------------

    async def complete(
        self, api_key: str, raw: CompletionRequest, *, request_id: str = "", deadline: float | None = None
    ) -> tuple[str, RouteResult]:
        prep = await self.prepare(api_key, raw, request_id=request_id, deadline=deadline)
        if prep.cached is not None:
            return await self.answer_from_cache(prep)
        attempts = self.attempts(prep)
        while (placed := await attempts.next()) is not None:
            tier, res = placed
            try:
                out = await self._backend(tier).complete(
                    tier.model, prep.request.messages, prep.request.params, prep.deadline
                )
            except FALLBACK_ERRORS as exc:
                await self.release(prep, res, f"{tier.name} failed: {exc.message}")
                log.warning("tier failed; falling back", tier=tier.name, error=exc.message)
                attempts.failed(tier, exc)
                continue
            except BaseException:
                await asyncio.shield(self.release(prep, res, "caller error, cancel or deadline"))
                raise
            await self.commit(prep, res, tier, out, exact=out.usage_exact)
            self.store_answer(prep, tier, out.text)
            return out.text, prep.result
        raise attempts.exhausted()

    def resume_settlements(self) -> int:
        return self.settler.resume()

    # ---- background work ----------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for pending settlements (called on shutdown).

        Whatever is still running after ``timeout_s`` is cancelled: journaled
        settlements resume on the next start, and the rest is best effort.
        """
        if not self._background:
            return
        _, late = await asyncio.wait(set(self._background), timeout=timeout_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            log.warning(
                "stopped with settlements unconfirmed",
                journaled=len(self.journal),
                durable=self.journal.durable,
            )


def _consume(task: asyncio.Future[Any]) -> None:
    # A task abandoned on the hit path must not log "exception never retrieved".
    if not task.cancelled():
        task.exception()


def _attempt_id(prep: Prepared, tier: TierSpec) -> str:
    """The ledger idempotency key of this call's next attempt, unique per attempt.

    The first attempt uses the bare request id so ledger events join logs and
    responses directly; fallbacks append "#<tier>", and "#<tier>.<n>" when a
    tier comes up a second time (a downgrade back to a tier that failed).
    """
    if prep.attempts == 0:
        return prep.request_id
    suffix = f".{prep.attempts}" if tier.name in prep.tiers_tried else ""
    return f"{prep.request_id}#{tier.name}{suffix}"


@contextlib.asynccontextmanager
async def _within(deadline: float | None, doing: str) -> AsyncIterator[None]:
    """Bound a step by the call's deadline (time.monotonic, the loop's clock)."""
    try:
        async with asyncio.timeout_at(deadline):
            yield
    except TimeoutError:
        raise DeadlineExceeded(f"the deadline passed while {doing}; allow more time") from None
