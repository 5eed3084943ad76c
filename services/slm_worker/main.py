"""Entry point: settings, logging, load and warm models, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import structlog
from pydantic import ValidationError

from rationer.errors import RationerError
from rationer.platform.logging import configure_logging
from rationer.platform.metrics import start_metrics_endpoint
from rationer.platform.server import serve_until_signal, set_serving, start
from rationer.platform.settings import load_settings, service_token_of, with_service_token
from rationer.platform.tracing import tracing_for
from services.slm_worker.server import WorkerDeps, create_server
from services.slm_worker.servicer import WorkerRef
from services.slm_worker.settings import WorkerSettings
from services.slm_worker.wiring import build_deps

log = structlog.get_logger(__name__)


async def run(settings: WorkerSettings) -> None:
    ref = WorkerRef()
    token = service_token_of(settings)
    deps = WorkerDeps(ref)
    server, port = create_server(settings.listen, deps, service_token=token)
    # Listen first so health checks see NOT_SERVING (not a refused connection)
    # while the models load.
    await start(server, serving=False)
    host = settings.listen.rsplit(":", 1)[0]
    log.info("worker listening; loading models", port=port, models=[m.name for m in settings.models])
    try:
        worker = await build_deps(settings, worker_id=settings.worker_id or f"{host}:{port}")
    except BaseException:
        await server.stop(0)
        raise
    ref.worker = worker
    if settings.metrics_port is not None:
        from services.slm_worker.metrics import WorkerLoadCollector

        deps.metrics.registry.register(WorkerLoadCollector(worker))
        start_metrics_endpoint(settings.metrics_host, settings.metrics_port, deps.metrics.registry)
    await set_serving(server, True)
    log.info("worker serving", port=port, worker_id=worker.worker_id)
    try:
        await serve_until_signal(server, settings.grace_period_s, on_drain=worker.drain_async)
    finally:
        worker.close()


def main(config: Path | None = None) -> int:
    """Run the worker; returns the process exit status."""
    # llama.cpp's OpenMP threads otherwise spin between decode calls. A
    # multi-thread context (a batched one) then holds a core while the event
    # loop and gRPC need it, and on a loaded host streams stalled until their
    # deadline; passive waiting costs one wake-up per decode call. libgomp
    # reads this when llama_cpp is first imported, which happens later.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        settings = load_settings(WorkerSettings, "worker", toml_path=config, environ=os.environ)
    except (RationerError, ValidationError) as exc:
        print(f"slm-worker: invalid configuration: {exc}", file=sys.stderr)
        return 2
    try:
        settings = with_service_token(settings, "worker")
    except RationerError as exc:
        print(f"slm-worker: refusing to start: {exc.message}", file=sys.stderr)
        return 2
    # The service token is scrubbed from every log line, whatever its format.
    configure_logging(settings.logging.format, settings.logging.level, secrets=[service_token_of(settings)])
    try:
        with tracing_for("slm_worker", settings.otlp_endpoint):
            asyncio.run(run(settings))
    except RationerError as exc:
        log.error("worker failed to start", error=exc.message)
        print(f"slm-worker: refusing to start: {exc.message}", file=sys.stderr)
        return 1
    return 0
