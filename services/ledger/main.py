"""Entry point of the ledger: settings, logging, dependencies, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import structlog

from rationer.platform.clock import SYSTEM_CLOCK, Clock
from rationer.platform.logging import configure_logging
from rationer.platform.metrics import start_metrics_endpoint
from rationer.platform.server import serve_until_signal, start
from rationer.platform.settings import load_service_settings, service_token_of
from services.ledger.admin import LedgerAdmin
from services.ledger.ledger import Ledger
from services.ledger.ratelimit import InProcessRateLimiter, RateLimiter, RedisRateLimiter
from services.ledger.server import LedgerDeps, create_server
from services.ledger.settings import LedgerSettings
from services.ledger.store import SQLiteStore, Store
from services.ledger.store_postgres import PostgresStore

log = structlog.get_logger(__name__)


def build_store(s: LedgerSettings) -> Store:
    if s.backend == "postgres":
        return PostgresStore(s.postgres_dsn, min_size=s.postgres_pool_min, max_size=s.postgres_pool_max,
                             timeout_s=s.db_timeout_s)  # fmt: skip
    return SQLiteStore(s.sqlite_path, synchronous=s.sqlite_synchronous, max_batch=s.group_commit_max_batch)


async def build_limiter(s: LedgerSettings, clock: Clock = SYSTEM_CLOCK, store: Store | None = None) -> RateLimiter:
    """Redis when configured (any number of ledger processes); else in-process,
    persisted in the ledger's database so a restart keeps the state."""
    if s.redis_url:
        return RedisRateLimiter(s.redis_url, s.redis_prefix, timeout_s=s.db_timeout_s)
    limiter = InProcessRateLimiter(clock, store)
    loaded = await limiter.load()
    if loaded:
        log.info("rate-limit state restored", limits=loaded)
    return limiter


async def open_deps(s: LedgerSettings, *, sweeper: bool = True, clock: Clock = SYSTEM_CLOCK) -> LedgerDeps:
    """Start storage (migrations run here), seed prices, start the expiry sweeper."""
    store = build_store(s)
    await store.start()
    ledger = Ledger(store, await build_limiter(s, clock, store), s, clock)
    admin = LedgerAdmin(ledger, s)
    await admin.seed_prices()
    if sweeper:
        ledger.start_sweeper()
    return LedgerDeps(ledger, admin)


async def close_deps(deps: LedgerDeps) -> None:
    await deps.ledger.stop()
    await deps.ledger.limiter.close()
    await deps.ledger.store.close()


async def run(s: LedgerSettings) -> None:
    deps = await open_deps(s)
    token = service_token_of(s)
    server, port = create_server(s.listen, deps, service_token=token)
    await start(server)
    metrics_port = start_metrics_endpoint(s.metrics_host, s.metrics_port) if s.metrics_port is not None else None
    log.info("ledger serving", port=port, backend=s.backend, metrics_port=metrics_port,
             rate_limits="redis" if s.redis_url else "in-process")  # fmt: skip
    try:
        await serve_until_signal(server, s.grace_period_s)
    finally:
        await close_deps(deps)


def main(config: Path | None = None) -> None:
    settings = load_service_settings(LedgerSettings, "ledger", config, os.environ)
    # The admin and service tokens are scrubbed from every log line, whatever its format.
    configure_logging(settings.logging.format, settings.logging.level,
                      secrets=[settings.admin_token, service_token_of(settings)])  # fmt: skip
    asyncio.run(run(settings))
