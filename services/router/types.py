"""Every value the router's request path passes around, in one place.

Requests and their limits, model output, per-call state, the tier plan,
cache and ledger answers, stream events. Plain frozen dataclasses (the
per-call state and result are mutable on purpose: the stages fill them in).
No behaviour beyond small derived properties; the pipeline stages live in
``pipeline.py`` and its helper modules.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

# One Principal and one Reservation for every service, re-exported for the router's modules.
from rationer.platform.identity import Principal as Principal
from rationer.platform.identity import Reservation as Reservation
from services.router.policy import TierSpec

# ---- messages, parameters, model output ------------------------------------


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class GenParams:
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    top_k: int | None = None  # local workers and Anthropic upstreams; OpenAI has none


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    model: str
    model_ms: float = 0.0
    usage_exact: bool = True  # False: the upstream reported no usage
    # Parts of prompt_tokens a provider's prompt cache read or wrote (own rates in the price catalog).
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0


@dataclass(frozen=True)
class Delta:
    """A streamed piece of text; the last one has ``final`` and usage.

    A non-final delta with ``usage_exact`` carries the running usage (the
    worker counts what it generated so far); without it the counts are 0.
    """

    text: str
    final: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    model: str = ""
    # False when the upstream did not report usage (the core then bills the
    # reserved maximum, never $0).
    usage_exact: bool = True
    # On the final delta: parts of prompt_tokens read from / written to the provider's prompt cache.
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0


# ---- requests and results ----------------------------------------------------


@dataclass(frozen=True)
class RequestLimits:
    max_messages: int = 256
    max_prompt_chars: int = 64 * 1024
    default_max_tokens: int = 256
    max_tokens_cap: int = 4096
    max_stop: int = 8
    max_stop_chars: int = 64
    max_tag_chars: int = 128


@dataclass(frozen=True)
class CompletionRequest:
    messages: tuple[Message, ...]
    params: GenParams
    model: str = ""
    allow_cache_when_sampling: bool = False
    no_cache: bool = False
    project: str = ""
    user: str = ""


@dataclass
class RouteResult:
    request_id: str
    tier: str = ""
    model: str = ""
    complexity: float = 0.0
    cache_hit: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_nano_usd: int = 0
    savings_nano_usd: int = 0
    fallbacks: list[str] = field(default_factory=list)
    downgraded: bool = False
    budget_remaining_fraction: float = 1.0
    finish_reason: str = "stop"
    gateway_overhead_ms: float = 0.0
    model_ms: float = 0.0
    usage_exact: bool = True
    # The ledger could not take the commit yet; it is being retried in the
    # background (cost fields then read 0 in this response).
    settlement_pending: bool = False
    # Time spent per stage of the gateway's own path (auth, embed, cache,
    # headroom, classify, authorize, settle), for overhead breakdowns.
    stage_ms: dict[str, float] = field(default_factory=dict)

    def add_stage(self, name: str, started: float) -> None:
        self.stage_ms[name] = self.stage_ms.get(name, 0.0) + (time.perf_counter() - started) * 1000


@dataclass(frozen=True)
class StreamEvent:
    """One event of a streamed completion: text, a restart marker, or the final result."""

    delta: str = ""
    restart: bool = False
    final: RouteResult | None = None


# ---- collaborators' answers ----------------------------------------------------


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


@dataclass(frozen=True)
class EmbeddingsResult:
    """What ``RouterCore.embed`` hands the HTTP door: the vectors and their bill."""

    vectors: npt.NDArray[np.float32]
    tokens: int
    cost_nano_usd: int
    settlement_pending: bool


# ---- the plan and the per-call state -------------------------------------------


@dataclass(frozen=True)
class TierPlan:
    """The tiers one request may try, computed once from policy and scores.

    ``tiers`` is the chosen tier then its fallbacks. ``downgrades`` are the
    healthy tiers the key may use, cheapest first, when a budget denial may
    move the request to a cheaper one (empty when downgrading on exhaustion
    is off): after a denial only cheaper tiers are worth trying, since a
    dearer one would be denied too.
    """

    tiers: tuple[TierSpec, ...]
    downgrades: tuple[TierSpec, ...] = ()
    complexity: float = 0.0
    downgraded: bool = False
    # The request named this tier and may not be served by another (substitute.py).
    named: str = ""

    def after_denial(self, tier: TierSpec, limit_id: str) -> tuple[TierSpec, ...]:
        """The tiers left after ``tier`` was denied on ``limit_id``, dearest first (maybe none)."""
        if not limit_id.startswith("budget"):
            return ()
        return tuple(t for t in reversed(self.downgrades) if t.rank < tier.rank)


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
    # Keys whose named tier may be replaced by another (settings.fallback_for; substitute.py).
    fallback_for: tuple[str, ...] = ()


@dataclass
class Prepared:
    """One call's state from authentication to settlement; the stages fill it in."""

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
    plan: TierPlan | None = None
    cached: CachedAnswer | None = None
    attempts: int = 0
    tiers_tried: list[str] = field(default_factory=list)
    # Prompt tokens each tier's hold was sized for (counted once per tier).
    hold_prompt: dict[str, int] = field(default_factory=dict)
    # The budget headroom still in flight when nothing before the hold needs it (lookup.py).
    headroom: Awaitable[float] | None = None


Canonicalize = Callable[[Sequence[Message]], str]
ContextOf = Callable[[CompletionRequest], dict[str, object]]
CacheablePolicy = Callable[[CompletionRequest], bool]
