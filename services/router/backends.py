"""The frontier tier as a ModelBackend, with a small circuit breaker.

After ``trip_after`` consecutive failures the tier reports unhealthy for
``cooldown_s`` so the policy routes around it instead of paying a timeout on
every request; the first call after the cool-down probes it again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from rationer.errors import Unavailable
from services.router.frontier import FrontierClient
from services.router.model_types import Completion, Delta, GenParams, Message


class FrontierBackend:
    def __init__(self, client: FrontierClient, *, trip_after: int = 3, cooldown_s: float = 10.0) -> None:
        self.client = client
        self._trip_after = trip_after
        self._cooldown_s = cooldown_s
        self._failures = 0
        self._open_until = 0.0

    def healthy(self, model: str) -> bool:
        return time.monotonic() >= self._open_until

    def _ok(self) -> None:
        self._failures = 0

    def _failed(self) -> None:
        self._failures += 1
        if self._failures >= self._trip_after:
            self._open_until = time.monotonic() + self._cooldown_s

    async def complete(
        self, model: str, messages: Sequence[Message], params: GenParams, deadline: float | None
    ) -> Completion:
        try:
            out = await self.client.complete(messages, params, deadline)
        except Unavailable:
            self._failed()
            raise
        self._ok()
        return out

    async def stream(
        self, model: str, messages: Sequence[Message], params: GenParams, deadline: float | None
    ) -> AsyncIterator[Delta]:
        try:
            async for delta in self.client.stream(messages, params, deadline):
                yield delta
        except Unavailable:
            self._failed()
            raise
        self._ok()
