"""Router entry point: settings, logging, collaborators (``wiring.build_deps``), serve until SIGTERM."""

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
from services.ledger.client import LedgerClient
from services.router.adapters import GrpcLedger
from services.router.loop import loop_factory
from services.router.orphans import DrainReport, drain_journal
from services.router.server import create_server
from services.router.settings import RouterSettings
from services.router.wiring import build_deps

log = structlog.get_logger(__name__)


async def serve(settings: RouterSettings) -> None:
    deps = await build_deps(settings)
    server, port = create_server(settings.listen, deps)
    await start(server)
    http_runner = None
    if settings.http.enabled:
        from services.router.http.app import start_http

        http_runner = await start_http(deps.core, settings.http, registry=deps.metrics.registry, ledger=deps.ledger)
    if settings.metrics_port is not None:
        start_metrics_endpoint(settings.metrics_host, settings.metrics_port, deps.metrics.registry)
    log.info("router serving", port=port, http=settings.http.listen if http_runner else None)

    async def drain() -> None:
        # HTTP first: its in-flight requests still commit and spawn
        # settlements, which the core's drain then waits for.
        if http_runner is not None:
            await http_runner.stop()
        await deps.core.drain()

    try:
        await serve_until_signal(server, settings.grace_period_s, on_drain=drain)
    finally:
        if http_runner is not None:
            await http_runner.stop()
        await deps.close()


async def _drain(settings: RouterSettings, path: Path, wait_s: float) -> DrainReport:
    ledger = GrpcLedger(LedgerClient(settings.ledger_address, service_token=service_token_of(settings)))
    try:
        return await drain_journal(path, ledger, wait_s=wait_s)
    finally:
        await ledger.client.close()


def drain_main(path: Path, config: Path | None, wait_s: float) -> DrainReport:
    """``rationer router drain-journal``: settle a journal another router left, with this config's ledger."""
    settings = load_service_settings(RouterSettings, "router", config, os.environ)
    configure_logging(settings.logging.format, settings.logging.level, secrets=[service_token_of(settings)])
    return asyncio.run(_drain(settings, path, wait_s))


def main(config: Path | None = None) -> None:
    settings = load_service_settings(RouterSettings, "router", config, os.environ)
    # Frontier keys and the service token are scrubbed from every log line, whatever its format.
    configure_logging(settings.logging.format, settings.logging.level,
                      secrets=[service_token_of(settings), settings.http.console.secret_value(),
                               *(t.api_key for t in settings.tiers)])  # fmt: skip
    factory = loop_factory(settings.event_loop)
    with tracing_for("router", settings.otlp_endpoint), asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(settings))
