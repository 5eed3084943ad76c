"""Entry point: ``rationer serve cache --config FILE``."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import structlog

from rationer.errors import Unavailable
from rationer.platform.logging import configure_logging
from rationer.platform.metrics import start_metrics_endpoint
from rationer.platform.server import serve_until_signal, set_serving
from rationer.platform.settings import load_service_settings, service_token_of
from rationer.platform.tracing import tracing_for
from services.cache.server import CacheDeps, create_server
from services.cache.settings import CacheSettings
from services.cache.wiring import build_deps

log = structlog.get_logger(__name__)

SWEEP_INTERVAL_S = 60.0


async def _sweeper(deps: CacheDeps) -> None:
    # Expired entries are already invisible to lookups; this frees their space.
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        removed = await deps.cache.sweep_expired()
        if removed:
            log.info("expired cache entries removed", removed=removed)


async def run(settings: CacheSettings) -> None:
    deps = build_deps(settings)
    token = service_token_of(settings)
    server, port = create_server(settings.listen, deps, service_token=token)
    await server.start()  # health says NOT_SERVING (and RPCs say UNAVAILABLE) until loaded
    log.info("cache listening", port=port, backend=settings.backend, data_dir=settings.data_dir or "(memory)")
    if settings.metrics_port is not None:
        start_metrics_endpoint(settings.metrics_host, settings.metrics_port, deps.metrics.registry)
    try:
        await deps.cache.start()
    except Unavailable as exc:
        # The shared backend's database is unreachable or refuses the schema:
        # say why and stop, rather than serve UNAVAILABLE forever.
        await server.stop(0)
        raise SystemExit(f"cache: refusing to start: {exc}") from exc
    await set_serving(server, True)
    log.info("cache serving", loaded_from=deps.cache.loaded_from)
    sweeper = asyncio.create_task(_sweeper(deps))
    try:
        await serve_until_signal(server, settings.grace_period_s)
    finally:
        sweeper.cancel()
        deps.cache.close(save=True)


def main(config: Path | None = None) -> None:
    settings = load_service_settings(CacheSettings, "cache", config, os.environ)
    # The service token is scrubbed from every log line, whatever its format.
    configure_logging(settings.logging.format, settings.logging.level, secrets=[service_token_of(settings)])
    with tracing_for("cache", settings.otlp_endpoint):
        asyncio.run(run(settings))
