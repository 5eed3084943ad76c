"""What the router needs from its collaborators, as plain protocols.

The gRPC clients of the ledger, cache and worker pool satisfy these through
small adapters (``adapters.py``), so the core can be read and tested without
any transport in mind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

# One Principal and one Reservation for every service, re-exported for the router's modules.
from rationer.platform.identity import Principal as Principal
from rationer.platform.identity import Reservation as Reservation
from services.ledger.calls import CacheHitCall, CommitCall
from services.router.model_types import Completion, Delta, GenParams, Message


@dataclass(frozen=True)
class Charge:
    cost_nano_usd: int
    counterfactual_nano_usd: int


@dataclass(frozen=True)
class CachedAnswer:
    answer: str
    tier: str
    model: str
    similarity: float
    exact: bool
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class WrongHitReport:
    """The cache's answer to ``POST /v1/cache/feedback`` / ``ReportWrongHit``."""

    entry_id: str
    evicted: bool
    already_reported: bool


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
        max_tokens: int,
        project: str,
        request_id: str,
    ) -> Reservation: ...

    async def commit(self, call: CommitCall) -> Charge: ...

    async def release(self, *, reservation_id: str, key_id: str, reason: str) -> None: ...

    async def record_cache_hit(self, call: CacheHitCall) -> Charge: ...


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


class EmbedderPort(Protocol):
    def embed_one(self, text: str) -> npt.NDArray[np.float32]: ...


class ScorerPort(Protocol):
    def score(self, vector: npt.NDArray[np.float32], text: str) -> float: ...
