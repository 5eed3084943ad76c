"""The router's request pipeline: one plain class behind the gRPC servicer and the HTTP door.

A chat request runs these stages, top to bottom, for unary and streamed
answers alike:

    authenticate -> look up (cache, embedding, headroom) -> score -> plan tiers
    -> reserve (a hold per attempt) -> call the model -> settle (commit or release)

Each stage's detail sits in its own module (``lookup``, ``plan``, ``holds``,
``billing``, ``stream``); this file is the sequence. Every failure after a
hold is placed either commits true usage or releases the hold, so no
reservation leaks and no call is billed twice. The doors use only the
façade below (``complete``, ``stream``, ``principal``, ``models_for``,
``ready``, ``unready``, ``embed``, ``report_wrong_hit``, ``request_limits``, ``count_tokens``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping
from typing import Any

import numpy as np
import structlog

from rationer.embedding.batcher import MicroBatcher
from rationer.errors import DeadlineExceeded, FailedPrecondition, RationerError, ResourceExhausted, Unavailable
from rationer.platform.clock import SYSTEM_CLOCK, Clock
from services.router import access
from services.router.auth import AuthCache, resolve_project
from services.router.billing import Billing
from services.router.deadline import within
from services.router.embeddings import Embeddings
from services.router.fit import fit_plan
from services.router.holds import Holds
from services.router.journal import SettlementJournal
from services.router.lookup import Lookup
from services.router.plan import FALLBACK_ERRORS, exhausted, healthy_tiers, plan_tiers
from services.router.policy import TierPolicy, TierSpec
from services.router.ports import CachePort, EmbedderPort, LedgerPort, ModelBackend, ScorerPort
from services.router.pricing import PriceBook
from services.router.recorder import NULL_RECORDER, Recorder
from services.router.reference import Reference
from services.router.request_ids import feedback_request_id
from services.router.settlement import Settler, best_effort
from services.router.stream import StreamAttempt
from services.router.substitute import may_substitute
from services.router.tokens import TokenCounter, count_prompt
from services.router.tracing import traced_complete, traced_stream
from services.router.types import (
    CacheablePolicy,
    Canonicalize,
    CompletionRequest,
    ContextOf,
    CoreConfig,
    EmbeddingsResult,
    Message,
    Prepared,
    Principal,
    RequestLimits,
    Reservation,
    RouteResult,
    StreamEvent,
    WrongHitReport,
)
from services.router.validation import validate

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
        backends: Mapping[str, ModelBackend],
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
        reference: Reference | None = None,
        recorder: Recorder = NULL_RECORDER,
        ledger_connected: Callable[[], bool] | None = None,
    ) -> None:
        # The router's one wall clock (retry headers, timestamps); deadlines
        # use time.monotonic, which no date can move.
        self.clock = clock
        self.ledger, self.cache, self.embedder, self.scorer = ledger, cache, embedder, scorer
        self.policy = policy
        self.backends = backends
        self.canonicalize, self.cache_context, self.cacheable = canonicalize, cache_context, cacheable
        self.limits = limits or RequestLimits()
        self.config = config or CoreConfig()
        self.auth = AuthCache(ledger, ttl_s=auth_ttl_s)
        # Every commit and cache-hit record passes through its journal.
        self.journal = journal if journal is not None else SettlementJournal(clock=clock)
        self.settler = Settler(ledger, self.journal, self.spawn, max_backoff_s=self.config.settle_max_backoff_s,
                               connected=ledger_connected)  # fmt: skip
        self._background: set[asyncio.Task[Any]] = set()
        # Metrics hooks at the settle, deny and fallback points (telemetry.py; a no-op by default).
        self.recorder = recorder
        self.lookup = Lookup(ledger=ledger, cache=cache, embedder=embedder, batcher=batcher)
        self.holds = Holds(ledger, self.spawn, counters=counters, release_window_s=self.config.settle_retry_window_s,
                           recorder=recorder)  # fmt: skip
        self.billing = Billing(self.settler, self.holds, prices, cache, self.spawn, reference, recorder)
        self._embeddings = Embeddings(ledger, self.settler, embedder, recorder)

    # ---- the façade the doors use ------------------------------------------------

    async def principal(self, api_key: str) -> Principal:
        principal = await self.auth.principal(api_key)
        access.identified(principal)  # the access log names the caller, even if the request fails later
        return principal

    async def models_for(self, api_key: str) -> tuple[TierSpec, ...]:
        """The tiers this key may use, cheapest first."""
        principal = await self.principal(api_key)
        return self.policy.allowed(principal.allowed_tiers)

    def ready(self) -> list[str]:
        """The names of the tiers that can take a call now (empty: not ready)."""
        healthy = healthy_tiers(self.policy, self.backends)
        return [t.name for t in self.policy.tiers if t.name in healthy]

    def unready(self) -> list[str]:
        """The configured tiers that cannot take a call now (a frontier that cannot be reached)."""
        healthy = healthy_tiers(self.policy, self.backends)
        return [t.name for t in self.policy.tiers if t.name not in healthy]

    @property
    def request_limits(self) -> RequestLimits:
        return self.limits

    async def count_tokens(self, api_key: str, model: str, messages: tuple[Message, ...]) -> int:
        """The prompt's tokens by the tokenizer of the tier ``model`` names (``auto``: the dearest allowed).

        The dearest tier for ``auto``: it is the one a hard prompt goes to,
        and the count is what its hold would be sized for.
        """
        principal = await self.principal(api_key)
        allowed, explicit = self.policy.check_access(model, principal.allowed_tiers)
        tier = explicit or max(allowed, key=lambda t: t.rank)
        return await count_prompt(self.holds.counter(tier), messages)

    async def embed(self, principal: Principal, texts: list[str], *, request_id: str, project: str) -> EmbeddingsResult:
        return await self._embeddings.run(principal, texts, request_id=request_id, project=project)

    async def report_wrong_hit(self, api_key: str, request_id: object) -> WrongHitReport:
        """A key flags an answer it got from the cache (docs/cache.md, "Feedback")."""
        principal = await self.principal(api_key)
        rid = feedback_request_id(request_id)
        if self.cache is None or not self.config.cache_enabled:
            raise FailedPrecondition("this gateway runs without the cache; no answer came from it")
        report = await self.cache.report_wrong_hit(tenant=principal.tenant, key_id=principal.key_id, request_id=rid)
        if not report.already_reported:
            # The chargeback's wrong_hits column; the cache has already evicted the entry, so a ledger
            # outage here costs one count, never a wrong answer (the ledger ignores a repeat).
            await best_effort(
                self.ledger.record_wrong_hit(key_id=principal.key_id, request_id=rid), "record wrong hit"
            )
            self.recorder.wrong_hit(principal)
        return report

    # ---- unary ---------------------------------------------------------------------

    @traced_complete
    async def complete(
        self, api_key: str, raw: CompletionRequest, *, request_id: str = "", deadline: float | None = None
    ) -> tuple[str, RouteResult]:
        prep = await self.prepare(api_key, raw, request_id=request_id, deadline=deadline)
        if prep.cached is not None:
            return await self.billing.serve_hit(prep)
        tries = _Tries(prep, self.recorder)
        while (placed := await self._reserve_next(prep, tries)) is not None:
            tier, hold = placed
            try:
                out = await self.backends[tier.name].complete(
                    tier.model, prep.request.messages, prep.request.params, prep.deadline
                )
            except FALLBACK_ERRORS as exc:
                await self.holds.release(prep, hold, f"{tier.name} failed: {exc.message}")
                log.warning("tier failed; falling back", tier=tier.name, error=exc.message)
                tries.failed(tier, exc)
                continue
            except BaseException:
                await asyncio.shield(self.holds.release(prep, hold, "caller error, cancel or deadline"))
                raise
            await self.billing.commit(prep, hold, tier, out, exact=out.usage_exact)
            self.billing.store_answer(prep, tier, out.text)
            return out.text, prep.result
        raise exhausted(tries.last, prep.plan.named if prep.plan else "", prep.request.model)

    # ---- streamed --------------------------------------------------------------------

    @traced_stream
    async def stream(
        self, api_key: str, raw: CompletionRequest, *, request_id: str = "", deadline: float | None = None,
        allow_restart: bool = True,
    ) -> AsyncGenerator[StreamEvent, None]:  # fmt: skip
        """The answer as events: text deltas, maybe a ``restart``, then the final result.

        Fallback is possible mid-stream: if a tier dies after sending text, the
        next tier starts over and the client first receives a ``restart`` event
        telling it to discard the partial answer; the failed attempt's hold is
        released (a user does not pay for the gateway's own failure). A caller
        that cannot act on ``restart`` (a plain OpenAI client) passes
        ``allow_restart=False`` and gets UNAVAILABLE instead of a spliced answer.
        """
        prep = await self.prepare(api_key, raw, request_id=request_id, deadline=deadline)
        if prep.cached is not None:
            text, result = await self.billing.serve_hit(prep)
            yield StreamEvent(delta=text)
            yield StreamEvent(final=result)
            return
        tries, sent_any = _Tries(prep, self.recorder), False
        while (placed := await self._reserve_next(prep, tries)) is not None:
            tier, hold = placed
            attempt = StreamAttempt(self.backends[tier.name], self.holds, self.billing, prep, tier, hold,
                                    restart_first=sent_any)  # fmt: skip
            try:
                # aclosing: a client that goes away closes the upstream call now,
                # not whenever the event loop collects the generator.
                async with contextlib.aclosing(attempt.run()) as events:
                    async for event in events:
                        sent_any = sent_any or bool(event.delta)
                        yield event
                return
            except FALLBACK_ERRORS as exc:
                if not attempt.settled:
                    await self.holds.release(prep, hold, f"{tier.name} failed mid-stream: {exc.message}")
                tries.failed(tier, exc)
                if sent_any and not allow_restart:
                    raise _no_restart(tier, exc) from exc
            except BaseException as exc:
                if not attempt.settled:
                    # Shielded, and run as a core task: a second cancel (or the
                    # loop collecting this generator) cannot stop it half-way.
                    await asyncio.shield(self.spawn(attempt.settle_early(exc)))
                raise
        raise exhausted(tries.last, prep.plan.named if prep.plan else "", prep.request.model)

    # ---- stages: authenticate, look up, score, plan ----------------------------------

    async def prepare(
        self, api_key: str, raw: CompletionRequest, *, request_id: str = "", deadline: float | None = None
    ) -> Prepared:
        """Every stage before the first hold: authenticate, validate, look up, and on a miss score and plan."""
        started = time.perf_counter()
        if deadline is not None and deadline - time.monotonic() < self.config.min_deadline_s:
            raise DeadlineExceeded(
                f"deadline leaves under {self.config.min_deadline_s * 1000:.0f} ms; "
                "nothing useful can run in that time. Raise the client timeout"
            )
        auth_started = time.perf_counter()
        principal = await self._authenticate(api_key, deadline)
        auth_ms = (time.perf_counter() - auth_started) * 1000
        req = validate(raw, self.limits)
        # A key bound to a project bills every request there (docs/http.md).
        req = dataclasses.replace(req, project=resolve_project(principal, req.project))
        # Before the cache: a key must not get, even from its own tenant's
        # cache, an answer from a tier it may not use.
        self.policy.check_access(req.model, principal.allowed_tiers)
        rid = request_id or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=rid, end_user=req.user or None)
        prep = Prepared(
            principal=principal, request=req, request_id=rid, started=started, deadline=deadline,
            text=self.canonicalize(req.messages), vector=np.zeros(0, dtype=np.float32),
            cache_context=self.cache_context(req),
            cacheable=self.cache is not None and self.config.cache_enabled and self.cacheable(req),
            result=RouteResult(request_id=rid),
        )  # fmt: skip
        prep.result.stage_ms["auth"] = auth_ms
        access.attach(prep)
        async with within(deadline, "looking up the cache and embedding the prompt"):
            await self.lookup.run(prep, need_vector=self.policy.resolve(req.model) is None)
        if prep.cached is None:
            self._score_and_plan(prep)
            # Only tiers whose context window takes the prompt (fit.py); 400 naming the limit otherwise.
            await fit_plan(prep, self.holds, self.backends, self.policy.resolve(req.model))
        return prep

    async def _authenticate(self, api_key: str, deadline: float | None) -> Principal:
        async with within(deadline, "authenticating the key"):
            principal = await self.principal(api_key)
        # Logs here and in every downstream service (via call metadata) name
        # the caller; the interceptor's context scope ends with the call.
        structlog.contextvars.bind_contextvars(
            principal=f"{principal.org_id}/{principal.team_id}/{principal.user_id}/{principal.key_id}"
        )
        return principal

    def _score_and_plan(self, prep: Prepared) -> None:
        started = time.perf_counter()
        score = float(self.scorer.score(prep.vector, prep.text)) if prep.vector.size else 0.0
        prep.result.complexity = score
        prep.plan = plan_tiers(
            self.policy,
            score,
            allowed_tiers=prep.principal.allowed_tiers,
            requested=prep.request.model,
            healthy=healthy_tiers(self.policy, self.backends),
            remaining_fraction=prep.result.budget_remaining_fraction,
            downgrade_on_exhaustion=self.config.downgrade_on_exhaustion,
            substitute=may_substitute(prep.principal, self.config.fallback_for),
        )
        named = self.policy.resolve(prep.request.model)
        if named is not None and prep.plan.tiers[0] != named:
            # Replaced before any call (not ready): still a fallback the caller is told of.
            prep.result.fallbacks.append(named.name)
        prep.result.downgraded = prep.plan.downgraded
        prep.result.add_stage("classify", started)

    # ---- stage: reserve ----------------------------------------------------------------

    async def _reserve_next(self, prep: Prepared, tries: _Tries) -> tuple[TierSpec, Reservation] | None:
        """The next tier of the plan with its hold placed; None once the plan is used up.

        A budget denial moves on to the cheaper tiers the plan names for it
        (a dearer one would be denied too).
        """
        assert prep.plan is not None
        while tries.queue:
            tier = tries.queue.pop(0)
            try:
                return tier, await self.holds.place(prep, tier)
            except ResourceExhausted as exc:
                self.recorder.denied(prep.principal, tier.name, exc.limit_id)
                tries.last = exc
                tries.queue = list(prep.plan.after_denial(tier, exc.limit_id))
                prep.result.downgraded = prep.result.downgraded or bool(tries.queue)
        return None

    # ---- background work -----------------------------------------------------------------

    def resume_settlements(self) -> int:
        return self.settler.resume()

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
            log.warning("stopped with settlements unconfirmed", journaled=len(self.journal),
                        durable=self.journal.durable)  # fmt: skip


class _Tries:
    """What is left of one request's plan: the tiers still to try and the last error."""

    def __init__(self, prep: Prepared, recorder: Recorder) -> None:
        assert prep.plan is not None
        self._prep, self._recorder = prep, recorder
        self.queue = list(prep.plan.tiers)
        self.last: RationerError | None = None

    def failed(self, tier: TierSpec, exc: RationerError) -> None:
        self._prep.result.fallbacks.append(tier.name)
        self._recorder.fallback(self._prep, tier)
        self.last = exc


def _no_restart(tier: TierSpec, exc: RationerError) -> Unavailable:
    return Unavailable(
        f"tier {tier.name} failed mid-answer ({exc.message}); the text sent so far is "
        "incomplete and was not billed. Retry the request, or send allow_restart to let "
        "the gateway start over on another tier within the same stream"
    )
