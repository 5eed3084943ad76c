"""In-memory doubles of the router's ports (``services/router/ports.py``), for unit tests of the pipeline.

Each fake records what the core asked of it and can be told to fail, so a
test drives one branch of the pipeline in milliseconds, without a ledger,
cache, embedder or model process.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from rationer.errors import FailedPrecondition, RationerError, ResourceExhausted, Unauthenticated
from services.ledger.calls import CacheHitCall, CommitCall
from services.router import cachepolicy
from services.router.journal import SettlementJournal
from services.router.pipeline import RouterCore
from services.router.policy import PressureConfig, TierPolicy, TierSpec
from services.router.pricing import PriceBook
from services.router.reference import Reference
from services.router.types import (
    CachedAnswer,
    Charge,
    Completion,
    CompletionRequest,
    CoreConfig,
    Delta,
    GenParams,
    Message,
    Principal,
    Reservation,
    WrongHitReport,
)

KEY = "rk-test"
PRINCIPAL = Principal(org_id="o", team_id="t", user_id="u", key_id="k_1", tenant="o")
TIERS = (
    TierSpec(name="small", kind="local", rank=0, model="small-model"),
    TierSpec(name="big", kind="frontier", rank=1, model="big-model", threshold=0.5),
)


def request(text: str = "hello", *, max_tokens: int = 16, model: str = "", no_cache: bool = False) -> CompletionRequest:
    return CompletionRequest(
        messages=(Message("user", text),), params=GenParams(max_tokens=max_tokens), model=model, no_cache=no_cache
    )


@dataclass
class FakeLedger:
    """Holds, commits, releases and hit records, in lists; failures on demand."""

    principal: Principal = PRINCIPAL
    headroom_fraction: float = 1.0
    # tier name -> the limit id a hold there is denied on
    deny: dict[str, str] = field(default_factory=dict)
    # how many settlement calls (commit / cache hit) fail with ``settle_error`` first
    settle_failures: int = 0
    settle_error: type[RationerError] = RationerError
    holds_expired: bool = False  # every hold has passed its TTL: only a bill_late commit is taken
    replayed: bool = False  # Authorize answers as for an id another call used
    holds: list[tuple[str, str]] = field(default_factory=list)  # (tier, request id)
    commits: list[CommitCall] = field(default_factory=list)
    hits: list[CacheHitCall] = field(default_factory=list)
    releases: list[tuple[str, str]] = field(default_factory=list)  # (reservation id, reason)
    wrong_hits: list[tuple[str, str]] = field(default_factory=list)  # (key id, request id)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def authenticate(self, api_key: str) -> Principal:
        if api_key != KEY:
            raise Unauthenticated("unknown key")
        return self.principal

    async def headroom(self, key_id: str, project: str) -> float:
        return self.headroom_fraction

    async def authorize(
        self, *, key_id: str, tier: str, model: str, prompt_tokens: int, max_completion_tokens: int, project: str,
        request_id: str,
    ) -> Reservation:  # fmt: skip
        if tier in self.deny:
            raise ResourceExhausted(f"{tier} is over budget", limit_id=self.deny[tier])
        self.holds.append((tier, request_id))
        held = (prompt_tokens + max_completion_tokens) * 10
        return Reservation(f"res_{next(self._ids)}", held, replayed=self.replayed)

    def _settling(self) -> None:
        if self.settle_failures > 0:
            self.settle_failures -= 1
            raise self.settle_error("the ledger is away")

    async def commit(self, call: CommitCall) -> Charge:
        self._settling()
        if self.holds_expired and not call.bill_late:
            raise FailedPrecondition(f"reservation {call.reservation_id} expired")
        self.commits.append(call)
        cost = (call.prompt_tokens + call.completion_tokens) * 10
        return Charge(cost_nano_usd=cost, counterfactual_nano_usd=cost * 3)

    async def release(self, *, reservation_id: str, key_id: str, reason: str) -> None:
        self.releases.append((reservation_id, reason))

    async def record_cache_hit(self, call: CacheHitCall) -> Charge:
        self._settling()
        self.hits.append(call)
        return Charge(0, 0)

    async def record_wrong_hit(self, *, key_id: str, request_id: str) -> None:
        self._settling()
        self.wrong_hits.append((key_id, request_id))


@dataclass
class FakeCache:
    hit: CachedAnswer | None = None
    exact: bool = True  # whether ``hit`` answers the exact-only lookup
    lookups: list[bool] = field(default_factory=list)  # exact_only of each lookup
    stored: list[str] = field(default_factory=list)

    async def lookup(
        self, *, tenant: str, text: str, vector: npt.NDArray[np.float32], context: dict[str, object],
        exact_only: bool = False, request_id: str = "", key_id: str = "",
    ) -> CachedAnswer | None:  # fmt: skip
        self.lookups.append(exact_only)
        if exact_only and not self.exact:
            return None
        return self.hit

    reported: set[str] = field(default_factory=set)

    async def report_wrong_hit(self, *, tenant: str, key_id: str, request_id: str) -> WrongHitReport:
        again = request_id in self.reported
        self.reported.add(request_id)
        return WrongHitReport(entry_id="e_1", evicted=not again, already_reported=again)

    async def store(
        self, *, tenant: str, text: str, vector: npt.NDArray[np.float32], context: dict[str, object], answer: str,
        tier: str, model: str, cost_nano_usd: int, prompt_tokens: int, completion_tokens: int,
    ) -> None:  # fmt: skip
        self.stored.append(answer)


class FakeEmbedder:
    def embed_one(self, text: str) -> npt.NDArray[np.float32]:
        return np.ones(4, dtype=np.float32)

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return np.ones((len(texts), 4), dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


@dataclass
class FakeScorer:
    value: float = 0.0

    def score(self, vector: npt.NDArray[np.float32], text: str) -> float:
        return self.value


@dataclass
class FakeBackend:
    """A model: answers ``text`` (in ``pieces`` when streamed), or fails with ``error``.

    ``error_after`` streams that many pieces before failing; ``hang_after``
    streams that many and then waits forever (a caller cuts it).
    """

    text: str = "an answer"
    pieces: Sequence[str] = ("an ", "answer")
    error: RationerError | None = None
    error_after: int = 0
    hang_after: int | None = None
    running_usage: bool = False  # non-final deltas carry the running count (as the worker's do)
    usage_exact: bool = True
    up: bool = True
    calls: int = 0
    context: int | None = None  # the context window in tokens (None: unknown)
    # Set when a ``hang_after`` stream stalls, so a test cuts it there and not at a guessed time.
    hung: asyncio.Event = field(default_factory=asyncio.Event)

    async def complete(
        self, model: str, messages: Sequence[Message], params: GenParams, deadline: float | None
    ) -> Completion:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return Completion(self.text, prompt_tokens=5, completion_tokens=2, finish_reason="stop", model=model,
                          usage_exact=self.usage_exact)  # fmt: skip

    async def stream(
        self, model: str, messages: Sequence[Message], params: GenParams, deadline: float | None
    ) -> AsyncIterator[Delta]:
        self.calls += 1
        for i, piece in enumerate(self.pieces):
            if self.error is not None and i == self.error_after:
                raise self.error
            if self.hang_after is not None and i == self.hang_after:
                self.hung.set()
                await asyncio.Event().wait()
            yield Delta(piece, completion_tokens=i + 1 if self.running_usage else 0, usage_exact=self.running_usage)
        if self.error is not None:
            raise self.error
        yield Delta("", final=True, prompt_tokens=5, completion_tokens=len(self.pieces), finish_reason="stop",
                    model=model, usage_exact=self.usage_exact)  # fmt: skip

    def healthy(self, model: str) -> bool:
        return self.up

    def context_window(self, model: str) -> int | None:
        return self.context


@dataclass
class Fakes:
    ledger: FakeLedger = field(default_factory=FakeLedger)
    cache: FakeCache = field(default_factory=FakeCache)
    scorer: FakeScorer = field(default_factory=FakeScorer)
    backends: dict[str, FakeBackend] = field(default_factory=lambda: {t.name: FakeBackend() for t in TIERS})

    def core(
        self, *, journal: SettlementJournal | None = None, reference: Reference | None = None, **config: object
    ) -> RouterCore:
        return RouterCore(
            ledger=self.ledger,
            cache=self.cache,
            embedder=FakeEmbedder(),
            scorer=self.scorer,
            policy=TierPolicy(TIERS, PressureConfig(enabled=False)),
            backends=self.backends,
            prices=PriceBook(reference_input_per_million=1_000_000, reference_output_per_million=2_000_000),
            canonicalize=cachepolicy.canonicalize,
            cache_context=cachepolicy.context_of,
            cacheable=cachepolicy.cacheable,
            config=CoreConfig(settle_max_backoff_s=0.01, **config),  # type: ignore[arg-type]
            journal=journal,
            reference=reference,
        )


def hit(answer: str = "cached answer") -> CachedAnswer:
    return CachedAnswer(answer=answer, tier="big", model="big-model", similarity=1.0, exact=True, prompt_tokens=4,
                        completion_tokens=3)  # fmt: skip
