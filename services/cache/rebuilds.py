"""Index rebuilds off the event loop.

A rebuild (flat -> HNSW when a namespace crosses ``hnsw_min_entries``, or
after a quarter of an HNSW index became tombstones) takes tens of seconds at
100k entries. It runs on one dedicated thread (FAISS releases the GIL while
it builds); the old index keeps answering every lookup meanwhile, and the
new one is swapped in on the event loop, where all index mutations happen,
so the swap needs no lock (:meth:`NamespaceIndex.finish_rebuild`).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import structlog

from services.cache.index import NamespaceIndex

log = structlog.get_logger(__name__)


class Rebuilder:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-index-rebuild")
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, index: NamespaceIndex) -> None:
        """Start a background rebuild if ``index`` needs one and has none in flight."""
        if not index.rebuild_due or index.rebuilding:
            return
        job = index.begin_rebuild()
        loop = asyncio.get_running_loop()

        async def run() -> None:
            try:
                built, ids = await loop.run_in_executor(self._pool, job)
            except Exception:
                index.rebuilding = False
                log.exception("index rebuild failed; the old index keeps serving")
                return
            index.finish_rebuild(built, ids)

        task = loop.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Until every scheduled rebuild has been swapped in (tests, benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
