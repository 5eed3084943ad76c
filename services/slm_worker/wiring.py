"""The worker's dependencies from its settings: every model loaded and warmed, one ``Worker``."""

from __future__ import annotations

import asyncio

from services.slm_worker.loader import load_model, warm
from services.slm_worker.settings import WorkerSettings
from services.slm_worker.worker import Limits, LoadedModel, Worker


async def build_deps(settings: WorkerSettings, *, worker_id: str = "") -> Worker:
    """The worker with every configured model loaded and warmed (blocking work runs on threads).

    Its one dependency is the ``Worker`` itself: ``main`` starts the server
    first (health NOT_SERVING while this runs) and hands it over through
    ``WorkerDeps.ref``.
    """
    loaded: list[LoadedModel] = []
    try:
        for entry in settings.models:
            loaded.append(await asyncio.to_thread(load_model, entry, settings.model_cache_dir))
        for model in loaded:
            await warm(model)
    except BaseException:
        for model in loaded:
            model.pool.close()
        raise
    limits = Limits(max_stop_sequences=settings.max_stop_sequences, max_stop_bytes=settings.max_stop_bytes)
    return Worker(loaded, worker_id=worker_id or settings.worker_id, limits=limits)
