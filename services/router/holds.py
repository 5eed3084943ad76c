"""Holds on the ledger: placing one per attempt, sizing it, releasing it exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from rationer.errors import DeadlineExceeded
from services.router.deadline import within
from services.router.policy import TierSpec
from services.router.ports import LedgerPort
from services.router.recorder import NULL_RECORDER, Recorder
from services.router.request_ids import reused
from services.router.settlement import TRANSIENT, retry_settlement, settle_later
from services.router.tokens import ByteBound, TokenCounter, count_prompt
from services.router.types import Prepared, Reservation

Spawn = Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]


class Holds:
    def __init__(
        self,
        ledger: LedgerPort,
        spawn: Spawn,
        *,
        counters: Mapping[str, TokenCounter] | None = None,
        release_window_s: float = 240.0,
        recorder: Recorder = NULL_RECORDER,
    ) -> None:
        self._ledger, self._spawn, self.recorder = ledger, spawn, recorder
        # Per tier: how a hold's prompt tokens are counted (tokens.py). A tier
        # without one gets the byte bound with the default template allowance.
        self._counters: Mapping[str, TokenCounter] = counters or {}
        self._bound = ByteBound()
        self._release_window_s = release_window_s

    def counter(self, tier: TierSpec) -> TokenCounter:
        return self._counters.get(tier.name, self._bound)

    async def prompt_tokens(self, prep: Prepared, tier: TierSpec) -> int:
        """The prompt tokens a hold on ``tier`` is sized for: exact or a proven upper bound."""
        known = prep.hold_prompt.get(tier.name)
        if known is None:
            known = await count_prompt(self.counter(tier), prep.request.messages)
            prep.hold_prompt[tier.name] = known
        return known

    async def place(self, prep: Prepared, tier: TierSpec) -> Reservation:
        """Authorize this attempt's hold; ALREADY_EXISTS if its id was used by another call."""
        ledger_id = attempt_id(prep, tier)
        prep.attempts += 1
        prep.tiers_tried.append(tier.name)
        started = time.perf_counter()
        placing = asyncio.ensure_future(self._authorize(prep, tier, ledger_id))
        try:
            # Shielded: a caller that goes away (or runs out of time)
            # mid-Authorize must not leave a hold until its TTL; it is
            # released once it is placed.
            async with within(prep.deadline, "the ledger was placing the hold"):
                res = await asyncio.shield(placing)
        except (asyncio.CancelledError, DeadlineExceeded):
            self._spawn(self._release_once_placed(prep, placing))
            raise
        finally:
            prep.result.add_stage("authorize", started)
        if res.replayed:
            # The router never retries an Authorize, so a replay means another
            # call already used this id: serving this one would ride on that
            # call's hold and charge (a free answer). Its hold is not ours to
            # release either.
            raise reused(prep.request_id)
        self.recorder.hold_placed(prep, tier, res)
        return res

    async def _authorize(self, prep: Prepared, tier: TierSpec, ledger_id: str) -> Reservation:
        return await self._ledger.authorize(
            key_id=prep.principal.key_id,
            tier=tier.name,
            model=tier.model,
            prompt_tokens=await self.prompt_tokens(prep, tier),
            max_completion_tokens=prep.request.params.max_tokens,
            project=prep.request.project,
            request_id=ledger_id,
        )

    async def _release_once_placed(self, prep: Prepared, placing: asyncio.Future[Reservation]) -> None:
        try:
            res = await placing
        except Exception:
            return  # nothing was placed
        if not res.replayed:
            await self.release(prep, res, "the caller went away while the hold was being placed")

    async def release(self, prep: Prepared, res: Reservation, reason: str) -> None:
        self.recorder.hold_closed(res)  # released now or expiring on its own: not outstanding for this router

        def op() -> Coroutine[Any, Any, None]:
            return self._ledger.release(
                reservation_id=res.reservation_id, key_id=prep.principal.key_id, reason=reason[:200]
            )

        try:
            await retry_settlement(op, what="release")
        except TRANSIENT:
            # A hold that is not released in time expires on its own; never
            # let a ledger blip stop the fallback to the next tier.
            self._spawn(settle_later(op, what="release", window_s=self._release_window_s))


def attempt_id(prep: Prepared, tier: TierSpec) -> str:
    """The ledger idempotency key of this call's next attempt, unique per attempt.

    The first attempt uses the bare request id so ledger events join logs and
    responses directly; fallbacks append "#<tier>", and "#<tier>.<n>" when a
    tier comes up a second time (a downgrade back to a tier that failed).
    """
    if prep.attempts == 0:
        return prep.request_id
    suffix = f".{prep.attempts}" if tier.name in prep.tiers_tried else ""
    return f"{prep.request_id}#{tier.name}{suffix}"
