"""Server-streaming completion on top of :class:`RouterCore`.

Fallback is possible mid-stream: if a tier dies after sending text, the next
tier starts over and the client first receives a ``restart`` event telling
it to discard the partial answer. The failed attempt's hold is released
(a user does not pay for the gateway's own failure); the successful one is
committed with exact usage from the final upstream message. A caller that
cannot act on ``restart`` (a plain OpenAI client) passes
``allow_restart=False`` and gets UNAVAILABLE instead of a spliced answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from rationer.errors import Unavailable
from services.router.call_state import FALLBACK_ERRORS, Prepared
from services.router.core import RouterCore
from services.router.model_types import Completion, Delta
from services.router.policy import TierSpec
from services.router.ports import Reservation
from services.router.requests import CompletionRequest, RouteResult


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
        except BaseException:
            if not attempt.settled:
                await asyncio.shield(core.release(prep, res, "client cancelled, disconnected or timed out"))
            raise
    raise attempts.exhausted()


class _Attempt:
    def __init__(
        self, core: RouterCore, prep: Prepared, tier: TierSpec, res: Reservation, *, restart_first: bool
    ) -> None:
        self.core, self.prep, self.tier, self.res = core, prep, tier, res
        self.restart_first = restart_first
        self.settled = False

    async def run(self) -> AsyncGenerator[StreamEvent, None]:
        prep, tier = self.prep, self.tier
        pieces: list[str] = []
        started = time.perf_counter()
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
