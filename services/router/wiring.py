"""``build_deps(settings)``: the router's collaborators, built from its settings.

Everything the process needs (clients of the ledger, cache and workers, the
frontier backends, token counters, price book, journal, embedder, scorer)
is made here and handed to :class:`RouterCore` through its constructor;
``RouterDeps.close`` undoes it in reverse. Every channel to the ledger,
cache and workers presents ``settings.service_token`` (``main`` resolved it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from rationer.errors import RationerError
from rationer.platform.clock import SYSTEM_CLOCK, Clock
from rationer.platform.metrics import RpcMetrics
from rationer.platform.settings import service_token_of
from services.cache.client import CacheClient
from services.ledger.client import LedgerClient
from services.ledger.models import Price
from services.router.adapters import GrpcCache, GrpcLedger
from services.router.anthropic.upstream import AnthropicClient, AnthropicConfig
from services.router.backends import FrontierBackend, FrontierClient, FrontierConfig, WorkerPool
from services.router.backends.probe import keep_probing, probe_all
from services.router.journal import SettlementJournal
from services.router.orphans import adopt_orphans
from services.router.pipeline import RouterCore
from services.router.policy import PressureConfig, ScoreScale, TierPolicy, TierSpec
from services.router.ports import ModelBackend
from services.router.pricing import PriceBook
from services.router.reference import Reference, reference_tier
from services.router.settings import RouterSettings, TierSettings
from services.router.telemetry import PrometheusRecorder
from services.router.tokens import GgufCounter, TokenCounter, tier_counter, verify_counters
from services.router.types import CoreConfig, RequestLimits

log = structlog.get_logger(__name__)
JOURNAL_LOCK_WAIT_S = 2.0

Closer = Callable[[], Awaitable[None]]


@dataclass
class RouterDeps:
    """The core, the router's own metrics registry, and how to let go of what it holds."""

    core: RouterCore
    closers: list[Closer] = field(default_factory=list)
    # The gRPC server, the HTTP door's /metrics and the metrics port all serve this registry.
    metrics: RpcMetrics = field(default_factory=RpcMetrics)
    # The router's one ledger client, shared by the console (it calls as the signed-in key).
    ledger: LedgerClient | None = None

    async def close(self) -> None:
        await self.core.drain()
        for close in reversed(self.closers):
            await close()


async def build_deps(settings: RouterSettings, clock: Clock = SYSTEM_CLOCK) -> RouterDeps:
    """Build the core and its collaborators from settings; journaled settlements resume.

    ``clock``: the router's wall clock (tests pass the ledger's, so both agree on "this month")."""
    from rationer.classifier.scorer import ComplexityScorer
    from rationer.embedding import Embedder
    from rationer.embedding.batcher import MicroBatcher
    from services.router import cachepolicy

    # First: a journal another live router holds refuses this one before anything starts.
    journal = _journal(settings)
    embedder = Embedder(settings.embedder_model_dir, threads=settings.embedder_threads)
    batcher = MicroBatcher(embedder.embed, window_s=settings.embed_batch_window_ms / 1000, max_batch=32)
    scorer = ComplexityScorer(settings.classifier_artifact)
    closers: list[Closer] = []
    ledger, cache = _services(settings, closers)
    pool = WorkerPool(settings.worker_addresses, refresh_s=settings.worker_refresh_s,
                      service_token=service_token_of(settings), probe_misses=settings.worker_probe_misses)  # fmt: skip
    await pool.start()
    closers.append(pool.close)
    backends = _backends(settings.tiers, pool, closers)
    await _probe_frontiers(backends, closers)
    counters = await _counters(settings, pool, closers)
    reference = Reference(ref_tier := reference_tier(settings.tiers, settings.reference_tier), counters.get(ref_tier))
    prices = await _prices(ledger, closers, ref_tier, tier_prices=settings.answer_before_commit)
    metrics = RpcMetrics()
    recorder = PrometheusRecorder(metrics.registry, [t.name for t in settings.tiers],
                                  max_teams=settings.metrics_max_teams)  # fmt: skip
    recorder.watch_journal(journal.__len__)
    core = RouterCore(
        clock=clock,
        ledger=ledger,
        cache=cache,
        embedder=embedder,
        scorer=scorer,
        policy=_policy(settings, scorer.threshold, score_scale(scorer.card)),
        backends=backends,
        prices=prices,
        canonicalize=cachepolicy.canonicalize,
        cache_context=cachepolicy.context_of,
        cacheable=cachepolicy.cacheable,
        limits=_limits(settings),
        config=CoreConfig(settings.downgrade_on_exhaustion, fallback_for=tuple(settings.fallback_for)),
        auth_ttl_s=settings.auth_cache_ttl_s,
        batcher=batcher,
        journal=journal,
        ledger_connected=ledger.connected,
        counters=counters,
        reference=reference,
        recorder=recorder,
    )
    core.resume_settlements()

    async def close_journal() -> None:
        journal.close()

    async def close_batcher() -> None:
        batcher.close()

    # Closed last, after the drain (RouterDeps.close) and after the ledger channel.
    closers[:0] = [close_batcher, close_journal]
    return RouterDeps(core, closers, metrics, ledger.client)


def _journal(settings: RouterSettings) -> SettlementJournal:
    """This replica's journal, with the orphans of replicas gone for good moved into it when asked."""
    # A short wait: a replica adopting this journal holds its lock for milliseconds.
    journal = SettlementJournal(settings.journal_path, lock_wait_s=JOURNAL_LOCK_WAIT_S)
    if settings.adopt_orphaned_journals and settings.settlement_journal is not None:
        adopt_orphans(settings.settlement_journal, journal)
    return journal


def _limits(settings: RouterSettings) -> RequestLimits:
    return RequestLimits(default_max_tokens=settings.default_max_tokens, max_tokens_cap=settings.max_tokens_cap,
                         max_prompt_chars=settings.max_prompt_chars)  # fmt: skip


def _services(settings: RouterSettings, closers: list[Closer]) -> tuple[GrpcLedger, GrpcCache | None]:
    token = service_token_of(settings)
    ledger = GrpcLedger(LedgerClient(settings.ledger_address, service_token=token))
    closers.append(ledger.client.close)
    cache = None
    if settings.cache_address:
        cache = GrpcCache(CacheClient(settings.cache_address, service_token=token), settings.cache_min_similarity)
        closers.append(cache.client.close)
    return ledger, cache


def _backends(tiers: list[TierSettings], pool: WorkerPool, closers: list[Closer]) -> dict[str, ModelBackend]:
    backends: dict[str, ModelBackend] = {}
    for t in tiers:
        if t.kind == "local":
            backends[t.name] = pool
        elif t.kind == "anthropic":
            config = AnthropicConfig(base_url=t.base_url, model=t.model, api_key=t.api_key,
                                     max_retries=t.max_retries, cache_system=t.cache_system)  # fmt: skip
            anthropic = AnthropicClient(config)
            backends[t.name] = FrontierBackend(anthropic)
            closers.append(anthropic.aclose)
        else:
            client = FrontierClient(
                FrontierConfig(base_url=t.base_url, model=t.model, api_key=t.api_key, max_retries=t.max_retries)
            )
            backends[t.name] = FrontierBackend(client, context_window=t.context_window)
            closers.append(client.aclose)
    return backends


async def _probe_frontiers(backends: dict[str, ModelBackend], closers: list[Closer]) -> None:
    """Probe every frontier tier before serving, then keep probing (backends/probe.py)."""
    await probe_all(backends.values())
    prober = asyncio.create_task(keep_probing(backends.values()))

    async def stop_prober() -> None:
        prober.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await prober

    closers.append(stop_prober)


def _policy(settings: RouterSettings, default_strong: float, scale: ScoreScale | None) -> TierPolicy:
    p = settings.pressure
    return TierPolicy(
        tier_specs(settings.tiers, settings.strong_threshold, default_strong, scale),
        PressureConfig(p.enabled, p.start_fraction, p.strength, p.floor_fraction, scale),
    )


def score_scale(card: dict[str, Any]) -> ScoreScale | None:
    table = card.get("strong_share_thresholds") or {}
    return ScoreScale({float(k): float(v) for k, v in table.items()}) if table else None


def tier_specs(
    tiers: list[TierSettings], strong_threshold: float | None, default_strong: float, scale: ScoreScale | None
) -> list[TierSpec]:
    """Fill unset thresholds.

    The top tier takes the calibrated threshold, else the classifier's
    operating point. Tiers in between split the remaining traffic share
    evenly (via the classifier's score distribution when it ships one, since
    its scores sit in a narrow band; else evenly in score).
    """
    ordered = sorted(tiers, key=lambda t: t.rank)
    top = strong_threshold if strong_threshold is not None else default_strong
    n = len(ordered)
    specs = []
    for i, t in enumerate(ordered):
        if i == 0:
            threshold = 0.0
        elif t.threshold is not None and not (i == n - 1 and strong_threshold is not None):
            threshold = t.threshold
        elif i == n - 1:
            threshold = top
        elif scale is not None:
            top_share = scale.share_at(top)
            threshold = scale.threshold_for(top_share + (1.0 - top_share) * (n - 1 - i) / (n - 1))
        else:
            threshold = top * i / (n - 1)
        specs.append(TierSpec(name=t.name, kind=t.kind, rank=t.rank, model=t.model, threshold=threshold))
    return specs


async def _counters(settings: RouterSettings, pool: WorkerPool, closers: list[Closer]) -> dict[str, TokenCounter]:
    """One token counter per tier, loaded once (a GGUF vocabulary for local tiers)."""
    # Loaded side by side: each is a GGUF vocabulary read (and its file check), mostly outside the GIL.
    cache_dir = settings.model_cache_dir
    loaded = await asyncio.gather(*(asyncio.to_thread(tier_counter, t, cache_dir) for t in settings.tiers))
    counters: dict[str, TokenCounter] = {t.name: c for t, c in zip(settings.tiers, loaded, strict=True)}
    await verify_counters(counters, settings.tiers, pool.count_tokens)

    async def close_counters() -> None:
        for counter in counters.values():
            if isinstance(counter, GgufCounter):
                counter.close()

    closers.append(close_counters)
    return counters


async def _prices(ledger: GrpcLedger, closers: list[Closer], reference: str, *, tier_prices: bool) -> PriceBook:
    """``tier_prices``: keep the tiers' prices too (answer_before_commit needs them; without, commits wait)."""
    prices = PriceBook()
    if not tier_prices:
        prices.tiers = None
    await _refresh_prices(ledger, prices, reference)
    # The ledger may start after the router, and reference prices change:
    # re-read them every minute instead of only at start-up.
    refresher = asyncio.create_task(_keep_prices_fresh(ledger, prices, reference))

    async def stop_refresher() -> None:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher

    closers.append(stop_refresher)
    return prices


async def _refresh_prices(ledger: GrpcLedger, prices: PriceBook, reference: str) -> None:
    try:
        prices.reference_input_per_million, prices.reference_output_per_million = await ledger.reference_price(
            reference
        )
        if prices.tiers is not None:
            latest: dict[str, Price] = {}
            for price in sorted(await ledger.prices(), key=lambda p: p.version):
                latest[price.tier] = price
            prices.tiers = latest
    except RationerError as exc:
        log.warning("could not read the prices from the ledger", error=exc.message)


async def _keep_prices_fresh(ledger: GrpcLedger, prices: PriceBook, reference: str, every_s: float = 60.0) -> None:
    while True:
        await asyncio.sleep(every_s)
        await _refresh_prices(ledger, prices, reference)
