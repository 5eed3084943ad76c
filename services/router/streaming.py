"""Server-streaming completion on top of :class:`RouterCore`.

Fallback is possible mid-stream: if a tier dies after sending text, the next
tier starts over and the client first receives a ``restart`` event telling
it to discard the partial answer. The failed attempt's hold is released
(a user does not pay for the gateway's own failure); the successful one is
committed with exact usage from the final upstream message. A caller that
cannot act on ``restart`` (a plain OpenAI client) passes
``allow_restart=False`` and gets UNAVAILABLE instead of a spliced answer.

A stream the caller ends early (hangs up, cancels, runs out of time) is
billed for what was generated so far: the worker's running count, else the
tier's counter over the text received, never more than ``max_tokens``. That
commit goes through the journal like any other and is shielded from the
cancel; the hold is released instead only when nothing was produced yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import structlog

from rationer.errors import Cancelled, DeadlineExceeded, RationerError, Unavailable
from services.router.call_state import FALLBACK_ERRORS, Prepared
from services.router.core import RouterCore
from services.router.model_types import Completion, Delta
from services.router.policy import TierSpec
from services.router.ports import Reservation
from services.router.requests import CompletionRequest, RouteResult

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StreamEvent:
    delta: str = ""
    restart: bool = False
    final: RouteResult | None = None


async def stream_completion(
    core: RouterCore,
    api_key: str,
    raw: CompletionRequest,
    *,
    request_id: str = "",
    deadline: float | None = None,
    allow_restart: bool = True,
) -> AsyncIterator[StreamEvent]:
    prep = await core.prepare(api_key, raw, request_id=request_id, deadline=deadline)
    if prep.cached is not None:
        text, result = await core.answer_from_cache(prep)
        yield StreamEvent(delta=text)
        yield StreamEvent(final=result)
        return
    attempts = core.attempts(prep)
    sent_any = False
    while (placed := await attempts.next()) is not None:
        tier, res = placed
        attempt = _Attempt(core, prep, tier, res, restart_first=sent_any)
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
                await core.release(prep, res, f"{tier.name} failed mid-stream: {exc.message}")
            attempts.failed(tier, exc)
            if sent_any and not allow_restart:
                raise Unavailable(
                    f"tier {tier.name} failed mid-answer ({exc.message}); the text sent so far is "
                    "incomplete and was not billed. Retry the request, or send allow_restart to let "
                    "the gateway start over on another tier within the same stream"
                ) from exc
        except BaseException as exc:
            if not attempt.settled:
                # Shielded, and run as a core task: a second cancel (or the
                # loop collecting this generator) cannot stop it half-way.
                await asyncio.shield(core.spawn(attempt.settle_early(exc)))
            raise
    raise attempts.exhausted()


def _early_note(exc: BaseException) -> str:
    if isinstance(exc, DeadlineExceeded | TimeoutError):
        return "deadline_exceeded"
    if isinstance(exc, GeneratorExit | asyncio.CancelledError | Cancelled | ConnectionError):
        return "client_disconnected"
    return "stream_error"


class _Attempt:
    def __init__(
        self, core: RouterCore, prep: Prepared, tier: TierSpec, res: Reservation, *, restart_first: bool
    ) -> None:
        self.core, self.prep, self.tier, self.res = core, prep, tier, res
        self.restart_first = restart_first
        self.settled = False
        self.pieces: list[str] = []  # text handed to the caller so far
        self.usage_so_far: Delta | None = None  # the upstream's last running count
        self.started = time.perf_counter()

    async def run(self) -> AsyncGenerator[StreamEvent, None]:
        prep, tier, pieces = self.prep, self.tier, self.pieces
        started = self.started
        backend = self.core.backends[tier.name]
        stream: AsyncIterator[Delta] = backend.stream(
            tier.model, prep.request.messages, prep.request.params, prep.deadline
        )
        async with contextlib.aclosing(stream) as deltas:  # type: ignore[type-var]
            async for d in deltas:
                if d.final:
                    await self._settle(d, pieces, started)
                    yield StreamEvent(final=prep.result)
                    return
                if d.usage_exact and d.completion_tokens:
                    self.usage_so_far = d
                if not d.text:
                    continue
                if not pieces and self.restart_first:
                    yield StreamEvent(restart=True)
                pieces.append(d.text)
                yield StreamEvent(delta=d.text)
        raise Unavailable(f"tier {tier.name} ended its stream without a final message")

    async def _settle(self, d: Delta, pieces: list[str], started: float) -> None:
        out = Completion(
            text="".join(pieces),
            prompt_tokens=d.prompt_tokens,
            completion_tokens=d.completion_tokens,
            finish_reason=d.finish_reason or "stop",
            model=d.model or self.tier.model,
            model_ms=(time.perf_counter() - started) * 1000,
        )
        # Settled from the moment the commit is journaled: a cancel during the
        # commit must not also release the hold, or the release could land
        # first and the ledger would refuse the (journaled) commit.
        self.settled = True
        await self.core.commit(self.prep, self.res, self.tier, out, exact=d.usage_exact)
        self.core.store_answer(self.prep, self.tier, out.text)

    async def settle_early(self, exc: BaseException) -> None:
        """The caller ended the stream before its final message: bill what it used, or release."""
        if self.settled:
            return
        self.settled = True
        core, prep, tier = self.core, self.prep, self.tier
        text = "".join(self.pieces)
        counted = self.usage_so_far
        if counted is None and not text:
            await core.release(prep, self.res, f"stream ended before any token ({_early_note(exc)})")
            return
        max_tokens = prep.request.params.max_tokens
        counter = core.counter(tier)
        prompt = await core.hold_prompt_tokens(prep, tier)
        # What the upstream generated if it said so (it bills us for that), at
        # least the tokens of the text delivered.
        delivered = min(counter.text(text), max_tokens) if text else 0
        completion = min(max(counted.completion_tokens if counted else 0, delivered), max_tokens)
        exact = counted is not None and counted.completion_tokens >= delivered and counter.exact
        if counted is not None and counted.prompt_tokens:
            prompt = counted.prompt_tokens
        out = Completion(
            text=text,
            prompt_tokens=prompt,
            completion_tokens=completion,
            finish_reason=_early_note(exc),
            model=tier.model,
            model_ms=(time.perf_counter() - self.started) * 1000,
        )
        try:
            await core.commit(prep, self.res, tier, out, finish_note=out.finish_reason)
        except RationerError as exc:
            # The ledger's definitive refusal (the journal has dropped it); a
            # transient failure never gets here (it settles in the background).
            log.error("the ledger refused the commit of a stream that ended early", error=exc.message)
            return
        prep.result.usage_exact = exact
        log.info("stream ended early; billed as far as it went", tier=tier.name, reason=out.finish_reason,
                 prompt_tokens=prompt, completion_tokens=completion)  # fmt: skip
