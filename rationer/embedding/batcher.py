"""Micro-batching of embeddings under concurrency.

Concurrent ``embed`` calls that arrive within ``window_s`` of the first one
(or while the previous batch is still running) are embedded in one ONNX call:
one (n, 384) matrix multiply costs far less than n separate ones. A lone call
waits at most ``window_s`` extra; with ``window_s = 0`` it waits for nothing,
and only calls that queue behind a running batch are coalesced. ONNX runs on
one worker thread so the event loop never blocks on inference. Used by the
cache service and by the router.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import structlog

log = structlog.get_logger(__name__)

EmbedFn = Callable[[list[str]], npt.NDArray[np.float32]]


class MicroBatcher:
    def __init__(self, embed: EmbedFn, *, window_s: float = 0.0015, max_batch: int = 32) -> None:
        self._embed = embed
        self._window_s = window_s
        self._max_batch = max_batch
        self._pending: list[tuple[str, asyncio.Future[npt.NDArray[np.float32]]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self.batches = 0  # observability: how many ONNX calls were made
        self.items = 0

    async def embed(self, text: str) -> npt.NDArray[np.float32]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[npt.NDArray[np.float32]] = loop.create_future()
        self._pending.append((text, fut))
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif self._timer is None and self._running == 0:
            self._timer = loop.call_later(self._window_s, self._flush)
        return await fut

    async def embed_many(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Embed a caller's own batch directly (no window)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._embed, texts)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        self._running += 1
        task = asyncio.get_running_loop().run_in_executor(self._executor, self._embed, [t for t, _ in batch])
        task.add_done_callback(lambda f: self._done(f, batch))

    def _done(
        self,
        result: asyncio.Future[npt.NDArray[np.float32]],
        batch: list[tuple[str, asyncio.Future[npt.NDArray[np.float32]]]],
    ) -> None:
        self._running -= 1
        self.batches += 1
        self.items += len(batch)
        exc = result.exception()
        for i, (_, fut) in enumerate(batch):
            if fut.done():
                continue  # the caller was cancelled
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result.result()[i])
        # Requests that queued while this batch ran go out now, as one batch.
        if self._pending:
            self._flush()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
