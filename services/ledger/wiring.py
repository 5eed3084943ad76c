"""The ledger's dependencies from its settings: storage, rate limiter, ``Ledger``, ``LedgerAdmin``.

``main`` serves them; tests and benches build the same ones (``testsupport.ledger``).
"""

from __future__ import annotations

import structlog

from rationer.platform.clock import SYSTEM_CLOCK, Clock
from services.ledger.admin import LedgerAdmin
from services.ledger.budget_alerts import BudgetAlerts
from services.ledger.deliverer import WebhookDeliverer
from services.ledger.escrow import Escrow, replica_id
from services.ledger.ledger import Ledger
from services.ledger.ratelimit import InProcessRateLimiter, RateLimiter, RedisRateLimiter
from services.ledger.server import LedgerDeps
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


async def build_deps(s: LedgerSettings, *, sweeper: bool = True, clock: Clock = SYSTEM_CLOCK,
                     deliverer: bool | None = None) -> LedgerDeps:  # fmt: skip
    """Start storage (migrations run here), seed prices, start the expiry sweeper and the
    webhook deliverer (``deliverer``: None = with the sweeper; tests drive it by hand)."""
    store = build_store(s)
    await store.start()
    # Escrow needs row locks and advisory locks: PostgreSQL only (embedded
    # SQLite is one process with one writer, nothing to spread).
    escrow = Escrow(store, s, clock, replica_id(s)) if s.escrow and s.backend == "postgres" else None
    ledger = Ledger(store, await build_limiter(s, clock, store), s, clock, escrow=escrow)
    if s.escrow and escrow is None:
        log.warning("escrow is for PostgreSQL replicas; the SQLite ledger ignores it", backend=s.backend)
    if escrow is not None:
        escrow.start()
        log.info("escrow on", replica=escrow.replica)
    admin = LedgerAdmin(ledger, s)
    await admin.seed_prices()
    hooks = WebhookDeliverer(store, s, clock)
    alerts = BudgetAlerts(ledger, s, hooks)
    hooks.set_forecast_scan(alerts.scan_forecasts)
    if sweeper:
        ledger.start_sweeper()
    if sweeper if deliverer is None else deliverer:
        hooks.start()
    return LedgerDeps(ledger, admin, alerts)


async def close_deps(deps: LedgerDeps) -> None:
    await deps.alerts.deliverer.stop()
    await deps.ledger.stop()
    await deps.ledger.limiter.close()
    await deps.ledger.store.close()
