"""One streamed attempt on one tier: relay its deltas, then settle it, however it ends.

The successful attempt is committed with exact usage from the final upstream
message. A stream the caller ends early (hangs up, cancels, runs out of
time) is billed for what was generated so far: the worker's running count,
else the tier's counter over the text received, never more than
``max_tokens``. That commit goes through the journal like any other; the
hold is released instead only when nothing was produced yet. The loop over
tiers (fallback, restart) is ``RouterCore.stream``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator

import structlog

from rationer.errors import Cancelled, DeadlineExceeded, RationerError, Unavailable
from services.router.billing import Billing
from services.router.holds import Holds
from services.router.policy import TierSpec
from services.router.ports import ModelBackend
from services.router.types import Completion, Delta, Prepared, Reservation, StreamEvent

log = structlog.get_logger(__name__)


def early_note(exc: BaseException) -> str:
    """Why a stream ended before its final message, as the commit's finish note."""
    if isinstance(exc, DeadlineExceeded | TimeoutError):
        return "deadline_exceeded"
    if isinstance(exc, GeneratorExit | asyncio.CancelledError | Cancelled | ConnectionError):
        return "client_disconnected"
    return "stream_error"


class StreamAttempt:
    def __init__(
        self, backend: ModelBackend, holds: Holds, billing: Billing, prep: Prepared, tier: TierSpec,
        res: Reservation, *, restart_first: bool,
    ) -> None:  # fmt: skip
        self._backend, self._holds, self._billing = backend, holds, billing
        self.prep, self.tier, self.res = prep, tier, res
        self.restart_first = restart_first
        self.settled = False
        self.pieces: list[str] = []  # text handed to the caller so far
        self.usage_so_far: Delta | None = None  # the upstream's last running count
        self.started = time.perf_counter()

    async def run(self) -> AsyncGenerator[StreamEvent, None]:
        prep, tier, pieces = self.prep, self.tier, self.pieces
        stream: AsyncIterator[Delta] = self._backend.stream(
            tier.model, prep.request.messages, prep.request.params, prep.deadline
        )
        async with contextlib.aclosing(stream) as deltas:  # type: ignore[type-var]
            async for d in deltas:
                if d.final:
                    await self._settle(d)
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

    async def _settle(self, d: Delta) -> None:
        out = Completion(
            text="".join(self.pieces),
            prompt_tokens=d.prompt_tokens,
            completion_tokens=d.completion_tokens,
            finish_reason=d.finish_reason or "stop",
            model=d.model or self.tier.model,
            model_ms=(time.perf_counter() - self.started) * 1000,
            cache_read_tokens=d.cache_read_tokens,
            cache_creation_tokens=d.cache_creation_tokens,
        )
        # Settled from the moment the commit is journaled: a cancel during the
        # commit must not also release the hold, or the release could land
        # first and the ledger would refuse the (journaled) commit.
        self.settled = True
        await self._billing.commit(self.prep, self.res, self.tier, out, exact=d.usage_exact)
        self._billing.store_answer(self.prep, self.tier, out.text)

    async def settle_early(self, exc: BaseException) -> None:
        """The caller ended the stream before its final message: bill what it used, or release."""
        if self.settled:
            return
        self.settled = True
        prep, tier = self.prep, self.tier
        text = "".join(self.pieces)
        counted = self.usage_so_far
        if counted is None and not text:
            await self._holds.release(prep, self.res, f"stream ended before any token ({early_note(exc)})")
            return
        max_tokens = prep.request.params.max_tokens
        counter = self._holds.counter(tier)
        prompt = await self._holds.prompt_tokens(prep, tier)
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
            finish_reason=early_note(exc),
            model=tier.model,
            model_ms=(time.perf_counter() - self.started) * 1000,
        )
        try:
            await self._billing.commit(prep, self.res, tier, out, finish_note=out.finish_reason)
        except RationerError as err:
            # The ledger's definitive refusal (the journal has dropped it); a
            # transient failure never gets here (it settles in the background).
            log.error("the ledger refused the commit of a stream that ended early", error=err.message)
            return
        prep.result.usage_exact = exact
        log.info("stream ended early; billed as far as it went", tier=tier.name, reason=out.finish_reason,
                 prompt_tokens=prompt, completion_tokens=completion)  # fmt: skip
