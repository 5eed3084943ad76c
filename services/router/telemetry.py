"""The router's Prometheus exporter: the pipeline's :class:`~services.router.recorder.Recorder` events as metrics.

Every series is labelled by ``tier`` and ``team``, both bounded so a busy
gateway cannot grow the scrape without limit:

- ``tier`` is one of the configured tier names or ``embeddings`` (billed
  ``/v1/embeddings`` calls: cost and input tokens); anything else (a cache
  entry stored under a tier since removed) reads ``other``;
- ``team`` is the caller's team id for the first ``max_teams`` distinct
  teams this process sees (``RouterSettings.metrics_max_teams``, default
  50; 0 turns the label into ``all``), then ``other``; a key without a team
  reads ``none``. Per-team money stays exact in the ledger's chargeback;
  these series are for dashboards and alerts.

Money is exported in USD (the ledger's integer nano-USD divided by 1e9). A
commit the ledger could not take at once (journaled, ``settlement_pending``)
counts its tokens now and its cost never here: the chargeback has it once
the journal drains (``rationer_router_journal_backlog``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.router.embeddings import EMBEDDINGS_TIER
from services.router.policy import TierSpec
from services.router.types import Charge, Prepared, Principal, Reservation

NANO = 1e9
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
LABELS = ("tier", "team")


class TeamLabels:
    """Team ids as label values: the first ``limit`` distinct ones, then ``other``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, team_id: str) -> str:
        if not team_id:
            return "none"
        if self._limit <= 0:
            return "all"
        if team_id in self._seen:
            return team_id
        if len(self._seen) < self._limit:
            self._seen.add(team_id)
            return team_id
        return "other"


class PrometheusRecorder:
    """The recorder ``wiring.build_deps`` gives ``RouterCore``; its series live in ``registry``."""

    def __init__(self, registry: CollectorRegistry, tiers: Iterable[str], *, max_teams: int = 50) -> None:
        self._tiers = frozenset((*tiers, EMBEDDINGS_TIER))
        self._team = TeamLabels(max_teams)
        self._open: dict[str, tuple[str, str]] = {}

        def counter(name: str, doc: str, *extra: str) -> Counter:
            return Counter(name, doc, [*LABELS, *extra], registry=registry)

        self.cost = counter("rationer_router_cost_usd", "USD billed for model answers (ledger commits)")
        self.input_tokens = counter("rationer_router_input_tokens", "Prompt tokens billed for model answers")
        self.output_tokens = counter("rationer_router_output_tokens", "Completion tokens billed for model answers")
        self.savings = counter("rationer_router_savings_usd",
                               "USD saved against the reference price, by mechanism (cache, routing)",
                               "mechanism")  # fmt: skip
        self.model_answers = counter("rationer_router_model_answers", "Answers served by a model")
        self.cache_hits = counter("rationer_router_cache_hits", "Answers served from the semantic cache")
        self.wrong_hits = Counter("rationer_router_cache_wrong_hits", "Cached answers reported wrong (first report)",
                                  ["team"], registry=registry)  # fmt: skip
        self.denials = counter("rationer_router_denials",
                               "Ledger denials of a hold or hit record, by kind (budget, rate_limit, other)",
                               "kind")  # fmt: skip
        self.fallbacks = counter("rationer_router_fallbacks",
                                 "Tier attempts that failed and fell back (tier: the failed one)")  # fmt: skip
        self.holds = Gauge("rationer_router_holds_outstanding", "Ledger holds placed and not yet committed or released",
                           list(LABELS), registry=registry)  # fmt: skip
        self.seconds = Histogram("rationer_router_answer_seconds", "Time from request to settled answer, by source",
                                 [*LABELS, "source"], buckets=_SECONDS, registry=registry)  # fmt: skip
        self.backlog = Gauge("rationer_router_journal_backlog", "Settlements journaled and not yet confirmed",
                             registry=registry)  # fmt: skip

    def watch_journal(self, backlog: Callable[[], int]) -> None:
        """Read the journal's size at each scrape."""
        self.backlog.set_function(backlog)

    def _labels(self, tier: str, team_id: str) -> tuple[str, str]:
        return (tier if tier in self._tiers else ("none" if not tier else "other")), self._team(team_id)

    # ---- Recorder --------------------------------------------------------------

    def settled(self, prep: Prepared, tier: TierSpec, charge: Charge | None) -> None:
        labels = self._labels(tier.name, prep.principal.team_id)
        res = prep.result
        self.model_answers.labels(*labels).inc()
        self.input_tokens.labels(*labels).inc(res.prompt_tokens)
        self.output_tokens.labels(*labels).inc(res.completion_tokens)
        if charge is not None:
            self.cost.labels(*labels).inc(charge.cost_nano_usd / NANO)
            # A tier dearer than the reference "saves" a negative amount: a counter only grows.
            saved = charge.counterfactual_nano_usd - charge.cost_nano_usd
            self.savings.labels(*labels, "routing").inc(max(saved, 0) / NANO)
        self.seconds.labels(*labels, "model").observe(_elapsed(prep))

    def cache_hit(self, prep: Prepared) -> None:
        labels = self._labels(prep.result.tier, prep.principal.team_id)
        self.cache_hits.labels(*labels).inc()
        self.savings.labels(*labels, "cache").inc(max(prep.result.savings_nano_usd, 0) / NANO)
        self.seconds.labels(*labels, "cache").observe(_elapsed(prep))

    def denied(self, principal: Principal, tier: str, limit_id: str) -> None:
        self.denials.labels(*self._labels(tier, principal.team_id), denial_kind(limit_id)).inc()

    def embedded(self, principal: Principal, tokens: int, charge: Charge | None) -> None:
        labels = self._labels(EMBEDDINGS_TIER, principal.team_id)
        self.input_tokens.labels(*labels).inc(tokens)
        if charge is not None:
            self.cost.labels(*labels).inc(charge.cost_nano_usd / NANO)

    def fallback(self, prep: Prepared, tier: TierSpec) -> None:
        self.fallbacks.labels(*self._labels(tier.name, prep.principal.team_id)).inc()

    def hold_placed(self, prep: Prepared, tier: TierSpec, res: Reservation) -> None:
        labels = self._labels(tier.name, prep.principal.team_id)
        if res.reservation_id not in self._open:
            self._open[res.reservation_id] = labels
            self.holds.labels(*labels).inc()

    def hold_closed(self, res: Reservation) -> None:
        labels = self._open.pop(res.reservation_id, None)
        if labels is not None:
            self.holds.labels(*labels).dec()

    def wrong_hit(self, principal: Principal) -> None:
        self.wrong_hits.labels(self._team(principal.team_id)).inc()


def denial_kind(limit_id: str) -> str:
    """``budget:...`` is a budget, ``rpm:...`` / ``tpm:...`` a rate limit; anything else (a queue) is other."""
    if limit_id.startswith("budget"):
        return "budget"
    if limit_id.startswith(("rpm:", "tpm:")):
        return "rate_limit"
    return "other"


def _elapsed(prep: Prepared) -> float:
    return max(time.perf_counter() - prep.started, 0.0)
