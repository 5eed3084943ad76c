"""Plain data the request path passes around: configuration and per-call state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from rationer.errors import Internal, RationerError, ResourceExhausted, Unavailable
from services.router.model_types import Message
from services.router.policy import Decision
from services.router.ports import CachedAnswer, Principal
from services.router.requests import CompletionRequest, RouteResult

# Errors after which the next tier may succeed. Anything else (bad input,
# deadline, cancel) is the caller's and is returned as is.
FALLBACK_ERRORS: tuple[type[RationerError], ...] = (Unavailable, ResourceExhausted, Internal)


@dataclass(frozen=True)
class CoreConfig:
    downgrade_on_exhaustion: bool = True
    # Below this much time left there is no point starting: answer at once.
    min_deadline_s: float = 0.05
    cache_enabled: bool = True
    # How long a release the ledger could not take at once keeps being
    # retried; after the hold's TTL (300 s) it has expired on its own anyway.
    settle_retry_window_s: float = 240.0
    # Longest pause between retries of a journaled settlement during an outage.
    settle_max_backoff_s: float = 30.0


@dataclass
class Prepared:
    principal: Principal
    request: CompletionRequest
    request_id: str
    started: float
    deadline: float | None
    text: str
    vector: npt.NDArray[np.float32]
    cache_context: dict[str, object]
    cacheable: bool
    result: RouteResult
    decision: Decision | None = None
    cached: CachedAnswer | None = None
    attempts: int = 0
    tiers_tried: list[str] = field(default_factory=list)
    # Prompt tokens each tier's hold was sized for (counted once per tier).
    hold_prompt: dict[str, int] = field(default_factory=dict)


Canonicalize = Callable[[Sequence[Message]], str]
ContextOf = Callable[[CompletionRequest], dict[str, object]]
CacheablePolicy = Callable[[CompletionRequest], bool]
