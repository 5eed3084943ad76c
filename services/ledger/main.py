"""Entry point of the ledger: settings, logging, dependencies, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import structlog

from rationer.platform.logging import configure_logging
from rationer.platform.metrics import start_metrics_endpoint
from rationer.platform.server import serve_until_signal, start
from rationer.platform.settings import load_service_settings, service_token_of
from rationer.platform.tracing import tracing_for
from services.ledger.server import create_server
from services.ledger.settings import LedgerSettings
from services.ledger.wiring import build_deps, close_deps

log = structlog.get_logger(__name__)


async def run(s: LedgerSettings) -> None:
    deps = await build_deps(s)
    token = service_token_of(s)
    server, port = create_server(s.listen, deps, service_token=token)
    await start(server)
    metrics_port = None
    if s.metrics_port is not None:
        metrics_port = start_metrics_endpoint(s.metrics_host, s.metrics_port, deps.metrics.registry)
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
    with tracing_for("ledger", settings.otlp_endpoint):
        asyncio.run(run(settings))
