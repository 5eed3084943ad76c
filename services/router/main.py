"""Router entry point: settings, logging, collaborators, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from rationer.errors import RationerError
from rationer.platform.logging import configure_logging
from rationer.platform.metrics import start_metrics_endpoint
from rationer.platform.server import serve_until_signal, start
from rationer.platform.settings import load_service_settings, service_token_of
from services.cache.client import CacheClient
from services.ledger.client import LedgerClient
from services.router.adapters import GrpcCache, GrpcLedger
from services.router.backends import FrontierBackend, FrontierClient, FrontierConfig, WorkerPool
from services.router.call_state import CoreConfig
from services.router.core import RouterCore
from services.router.journal import SettlementJournal
from services.router.policy import PressureConfig, ScoreScale, TierPolicy, TierSpec
from services.router.pricing import PriceBook
from services.router.requests import RequestLimits
from services.router.server import RouterDeps, create_server
from services.router.settings import RouterSettings, TierSettings
from services.router.tokens import GgufCounter, TokenCounter, tier_counter, verify_counters

log = structlog.get_logger(__name__)


@dataclass
class Assembled:
    core: RouterCore
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        await self.core.drain()
        for close in reversed(self.closers):
            await close()


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


async def assemble(settings: RouterSettings) -> Assembled:
    """Build the core and its collaborators from settings.

    Every channel to the ledger, cache and workers presents
    ``settings.service_token`` (``main`` has resolved it).
    """
    from rationer.classifier.scorer import ComplexityScorer
    from rationer.embedding import Embedder
    from rationer.embedding.batcher import MicroBatcher
    from services.router import cachepolicy

    embedder = Embedder(settings.embedder_model_dir, threads=settings.embedder_threads)
    batcher = MicroBatcher(embedder.embed, window_s=settings.embed_batch_window_ms / 1000, max_batch=32)
    scorer = ComplexityScorer(settings.classifier_artifact)
    token = service_token_of(settings)
    ledger = GrpcLedger(LedgerClient(settings.ledger_address, service_token=token))
    closers: list[Callable[[], Awaitable[None]]] = [ledger.client.close]
    cache = None
    if settings.cache_address:
        cache = GrpcCache(CacheClient(settings.cache_address, service_token=token), settings.cache_min_similarity)
        closers.append(cache.client.close)
    pool = WorkerPool(settings.worker_addresses, refresh_s=settings.worker_refresh_s, service_token=token)
    await pool.start()
    closers.append(pool.close)
    backends: dict[str, object] = {}
    for t in settings.tiers:
        if t.kind == "local":
            backends[t.name] = pool
        else:
            client = FrontierClient(
                FrontierConfig(base_url=t.base_url, model=t.model, api_key=t.api_key, max_retries=t.max_retries)
            )
            backends[t.name] = FrontierBackend(client)
            closers.append(client.aclose)
    counters = await _counters(settings, pool)

    async def close_counters() -> None:
        for counter in counters.values():
            if isinstance(counter, GgufCounter):
                counter.close()

    closers.append(close_counters)
    prices = PriceBook()
    await _refresh_prices(ledger, prices)
    # The ledger may start after the router, and reference prices change:
    # re-read them every minute instead of only at start-up.
    refresher = asyncio.create_task(_keep_prices_fresh(ledger, prices))

    async def stop_refresher() -> None:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher

    closers.append(stop_refresher)
    p = settings.pressure
    scale = score_scale(scorer.card)
    journal = SettlementJournal(settings.settlement_journal)

    async def close_journal() -> None:
        journal.close()

    # Closed after the drain (Assembled.close) and after the ledger channel.
    closers.insert(0, close_journal)
    core = RouterCore(
        ledger=ledger,
        cache=cache,
        embedder=embedder,
        scorer=scorer,
        policy=TierPolicy(
            tier_specs(settings.tiers, settings.strong_threshold, scorer.threshold, scale),
            PressureConfig(p.enabled, p.start_fraction, p.strength, p.floor_fraction, scale),
        ),
        backends=backends,
        prices=prices,
        canonicalize=cachepolicy.canonicalize,
        cache_context=cachepolicy.context_of,
        cacheable=cachepolicy.cacheable,
        limits=RequestLimits(
            default_max_tokens=settings.default_max_tokens,
            max_tokens_cap=settings.max_tokens_cap,
            max_prompt_chars=settings.max_prompt_chars,
        ),
        config=CoreConfig(downgrade_on_exhaustion=settings.downgrade_on_exhaustion),
        auth_ttl_s=settings.auth_cache_ttl_s,
        batcher=batcher,
        journal=journal,
        counters=counters,
    )
    core.resume_settlements()

    async def close_batcher() -> None:
        batcher.close()

    closers.insert(0, close_batcher)
    return Assembled(core, closers)


async def _counters(settings: RouterSettings, pool: WorkerPool) -> dict[str, TokenCounter]:
    """One token counter per tier, loaded once (a GGUF vocabulary for local tiers)."""
    counters: dict[str, TokenCounter] = {}
    for tier in settings.tiers:
        counters[tier.name] = await asyncio.to_thread(tier_counter, tier, settings.model_cache_dir)
    await verify_counters(counters, settings.tiers, pool.count_tokens)
    return counters


async def _refresh_prices(ledger: GrpcLedger, prices: PriceBook) -> None:
    try:
        prices.reference_input_per_million, prices.reference_output_per_million = await ledger.reference_price()
    except RationerError as exc:
        log.warning("could not read the reference price from the ledger", error=exc.message)


async def _keep_prices_fresh(ledger: GrpcLedger, prices: PriceBook, every_s: float = 60.0) -> None:
    while True:
        await asyncio.sleep(every_s)
        await _refresh_prices(ledger, prices)


async def serve(settings: RouterSettings) -> None:
    assembled = await assemble(settings)
    server, port = create_server(settings.listen, RouterDeps(core=assembled.core))
    await start(server)
    http_runner = None
    if settings.http.enabled:
        from services.router.http import start_http

        http_runner = await start_http(assembled.core, settings.http)
    if settings.metrics_port is not None:
        start_metrics_endpoint(settings.metrics_host, settings.metrics_port)
    log.info("router serving", port=port, http=settings.http.listen if http_runner else None)
    async def drain() -> None:
        # HTTP first: its in-flight requests still commit and spawn
        # settlements, which the core's drain then waits for.
        if http_runner is not None:
            await http_runner.stop()
        await assembled.core.drain()

    try:
        await serve_until_signal(server, settings.grace_period_s, on_drain=drain)
    finally:
        if http_runner is not None:
            await http_runner.stop()
        await assembled.close()


def main(config: Path | None = None) -> None:
    settings = load_service_settings(RouterSettings, "router", config, os.environ)
    # Frontier keys and the service token are scrubbed from every log line, whatever its format.
    configure_logging(settings.logging.format, settings.logging.level,
                      secrets=[service_token_of(settings), *(t.api_key for t in settings.tiers)])  # fmt: skip
    asyncio.run(serve(settings))
