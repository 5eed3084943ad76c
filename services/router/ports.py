"""What the router needs from its collaborators, as plain protocols.

The gRPC clients of the ledger, cache and worker pool satisfy these through
small adapters (``adapters.py``, ``backends/``), so the core can be read and
tested without any transport in mind (``tests/fakes.py``). The values they
exchange are in ``types.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from services.ledger.calls import CacheHitCall, CommitCall
from services.router.types import (
    CachedAnswer,
    Charge,
    Completion,
    Delta,
    GenParams,
    Message,
    Principal,
    Reservation,
    WrongHitReport,
)


class LedgerPort(Protocol):
    async def authenticate(self, api_key: str) -> Principal: ...

    async def headroom(self, key_id: str, project: str) -> float: ...

    async def authorize(
        self,
        *,
        key_id: str,
        tier: str,
        model: str,
        prompt_tokens: int,
        max_completion_tokens: int,
        project: str,
        request_id: str,
    ) -> Reservation: ...

    async def commit(self, call: CommitCall) -> Charge: ...

    async def release(self, *, reservation_id: str, key_id: str, reason: str) -> None: ...

    async def record_cache_hit(self, call: CacheHitCall) -> Charge: ...

    async def record_wrong_hit(self, *, key_id: str, request_id: str) -> None: ...


class CachePort(Protocol):
    async def lookup(
        self,
        *,
        tenant: str,
        text: str,
        vector: npt.NDArray[np.float32],
        context: dict[str, object],
        exact_only: bool = False,
        request_id: str = "",
        key_id: str = "",
    ) -> CachedAnswer | None: ...

    async def report_wrong_hit(self, *, tenant: str, key_id: str, request_id: str) -> WrongHitReport: ...

    async def store(
        self,
        *,
        tenant: str,
        text: str,
        vector: npt.NDArray[np.float32],
        context: dict[str, object],
        answer: str,
        tier: str,
        model: str,
        cost_nano_usd: int,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None: ...


class ModelBackend(Protocol):
    """One tier's way of running a model: the worker pool or a frontier endpoint."""

    async def complete(
        self, model: str, messages: Sequence[Message], params: GenParams, deadline: float | None
    ) -> Completion: ...

    def stream(
        self, model: str, messages: Sequence[Message], params: GenParams, deadline: float | None
    ) -> AsyncIterator[Delta]: ...

    def healthy(self, model: str) -> bool: ...

    # Prompt plus max_tokens must fit in this many tokens; None: unknown (fit.py).
    def context_window(self, model: str) -> int | None: ...


class EmbedderPort(Protocol):
    """The shared sentence embedder: one prompt for the cache and scorer, batches for /v1/embeddings."""

    def embed_one(self, text: str) -> npt.NDArray[np.float32]: ...

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]: ...

    def count_tokens(self, text: str) -> int: ...


class ScorerPort(Protocol):
    def score(self, vector: npt.NDArray[np.float32], text: str) -> float: ...
