"""The tiers one request may still try, with budget-driven downgrade."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rationer.errors import RationerError, ResourceExhausted, Unavailable
from services.router.policy import TierSpec
from services.router.ports import Reservation

if TYPE_CHECKING:
    from services.router.call_state import Prepared
    from services.router.core import RouterCore


class Attempts:
    """The tiers a request may still try, each handed out with its hold placed.

    A budget denial moves on to cheaper tiers only (a dearer one would be
    denied too); a tier that fails is recorded as a fallback. Shared by the
    unary and the streaming paths.
    """

    def __init__(self, core: RouterCore, prep: Prepared, queue: list[TierSpec]) -> None:
        self._core, self._prep, self._queue = core, prep, queue
        self._last: RationerError | None = None

    async def next(self) -> tuple[TierSpec, Reservation] | None:
        while self._queue:
            tier = self._queue.pop(0)
            try:
                return tier, await self._core.reserve(self._prep, tier)
            except ResourceExhausted as exc:
                self._last = exc
                self._queue = self._core.on_exhausted(self._prep, tier, exc)
                self._prep.result.downgraded = self._prep.result.downgraded or bool(self._queue)
        return None

    def failed(self, tier: TierSpec, exc: RationerError) -> None:
        self._prep.result.fallbacks.append(tier.name)
        self._last = exc

    def exhausted(self) -> RationerError:
        return _exhausted(self._last)


def _exhausted(last: RationerError | None) -> RationerError:
    if last is None:
        return Unavailable("no tier could serve the request")
    if isinstance(last, ResourceExhausted):
        return last
    return Unavailable(f"every allowed tier failed; last error: {last.message}")
