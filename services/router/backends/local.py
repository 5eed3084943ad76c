"""The local tiers: a ``ModelBackend`` over the slm_worker pool, balanced client-side.

Each worker is reached through its ``WorkerClient``; this module keeps only
what is the router's: discovery, health and the choice of worker
(``workers.py``: DNS or static addresses, the probe's hysteresis, the
ranking). Every ``refresh_s`` the pool re-resolves its addresses and asks each
worker for ``ListModels`` (models and live load). A call goes to the worker
with the most spare capacity for the model. A worker that answers
RESOURCE_EXHAUSTED or UNAVAILABLE is skipped for that call and the next one is
tried; UNAVAILABLE also marks it down until a probe finds it up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

import structlog

from rationer.errors import DeadlineExceeded, RationerError, ResourceExhausted, Unavailable
from services.router.backends.workers import WorkerState, expand, rank
from services.router.types import Completion, Delta, GenParams, Message
from services.slm_worker.client import ChatMessage, GenerationParams, StreamChunk, WorkerClient

log = structlog.get_logger(__name__)

COUNT_TOKENS_TIMEOUT_S = 5.0
LIST_MODELS_TIMEOUT_S = 1.0


def _messages(messages: Sequence[Message]) -> list[ChatMessage]:
    return [ChatMessage(m.role, m.content) for m in messages]


def _params(p: GenParams) -> GenerationParams:
    return GenerationParams(max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p, stop=p.stop,
                            seed=p.seed, top_k=p.top_k)  # fmt: skip


def _timeout(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("deadline passed before a local worker could start")
    return left


def _delta(chunk: StreamChunk, model: str) -> Delta:
    usage = chunk.usage
    if chunk.final:
        return Delta(
            text=chunk.delta,
            final=True,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason=chunk.finish_reason or "stop",
            model=chunk.model or model,
        )
    # Running usage: what a caller that hangs up here is billed.
    return Delta(
        text=chunk.delta,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        usage_exact=usage is not None,
    )


def _client(address: str, service_token: str) -> WorkerClient:
    # No client-side deadline: each call passes what is left of the request's.
    return WorkerClient(address, timeout_s=None, service_token=service_token, label="the local worker")


class WorkerPool:
    def __init__(
        self, addresses: Sequence[str], refresh_s: float = 1.0, *, service_token: str = "", probe_misses: int = 2,
        client_factory: Callable[[str, str], WorkerClient] = _client,
    ) -> None:  # fmt: skip
        self._configured = list(addresses)
        self._service_token = service_token
        self._workers: list[WorkerState] = []
        self._refresh_s = refresh_s
        self._probe_misses = probe_misses
        self._new_client = client_factory
        self._turn = 0  # rotates the order of equally loaded workers
        self._task: asyncio.Task[None] | None = None

    async def _discover(self) -> None:
        wanted: list[str] = []
        for address in self._configured:
            wanted += await expand(address)
        known = {w.address: w for w in self._workers}
        workers = []
        for address in wanted:
            w = known.pop(address, None)
            if w is None:
                w = WorkerState(address, self._new_client(address, self._service_token))
            workers.append(w)
        self._workers = workers
        for gone in known.values():
            await gone.client.close()

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for w in self._workers:
            await w.client.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            await self.refresh()

    async def refresh(self) -> None:
        await self._discover()
        await asyncio.gather(*(self._refresh_one(w) for w in self._workers))

    async def _refresh_one(self, w: WorkerState) -> None:
        try:
            w.probed(await w.client.list_models(timeout_s=LIST_MODELS_TIMEOUT_S), self._probe_misses)
        except RationerError as exc:
            w.probed(exc, self._probe_misses)

    def healthy(self, model: str) -> bool:
        return any(w.up and w.serves(model) is not None for w in self._workers)

    def context_window(self, model: str) -> int | None:
        """The largest context (tokens) a live worker serving ``model`` has; None when none is known."""
        sizes = [info.context_size for w in self._workers if w.up and (info := w.serves(model)) is not None]
        return max((n for n in sizes if n > 0), default=None)

    def snapshot(self) -> list[dict[str, object]]:
        return [
            {"address": w.address, "up": w.up, "inflight": w.inflight, "models": sorted(w.models)}
            for w in self._workers
        ]

    def _ranked(self, model: str) -> list[WorkerState]:
        self._turn += 1
        return rank(self._workers, model, self._turn)

    def _skip(self, w: WorkerState, err: RationerError) -> None:
        if isinstance(err, Unavailable):
            w.up = False
        log.info("worker refused; trying the next", worker=w.address, error=err.message)

    async def complete(
        self, model: str, messages: Sequence[Message], params: GenParams, deadline: float | None
    ) -> Completion:
        last: RationerError = Unavailable(f"no local worker serves {model!r}")
        msgs, gen = _messages(messages), _params(params)
        for w in self._ranked(model):
            w.inflight += 1
            started = time.perf_counter()
            try:
                out = await w.client.generate(model, msgs, gen, timeout_s=_timeout(deadline))
            except (ResourceExhausted, Unavailable) as err:
                self._skip(w, err)
                last = err
                continue
            finally:
                w.inflight -= 1
            return Completion(
                text=out.text,
                prompt_tokens=out.usage.prompt_tokens,
                completion_tokens=out.usage.completion_tokens,
                finish_reason=out.finish_reason,
                model=out.model or model,
                # Wall time of the call as the router saw it (queueing on the
                # worker included), measured the same way as frontier calls.
                model_ms=(time.perf_counter() - started) * 1000,
            )
        raise last

    async def count_tokens(self, model: str, messages: Sequence[Message]) -> int | None:
        """A worker's exact prompt count for ``model``, or None when none answers."""
        msgs = _messages(messages)
        for w in [w for w in self._workers if w.up and w.serves(model) is not None]:
            try:
                return await w.client.count_tokens(model, msgs, timeout_s=COUNT_TOKENS_TIMEOUT_S)
            except RationerError as exc:
                log.warning("CountTokens failed", worker=w.address, error=exc.message)
        return None

    async def stream(
        self, model: str, messages: Sequence[Message], params: GenParams, deadline: float | None
    ) -> AsyncIterator[Delta]:
        last: RationerError = Unavailable(f"no local worker serves {model!r}")
        msgs, gen = _messages(messages), _params(params)
        for w in self._ranked(model):
            started = False
            chunks = w.client.generate_stream(model, msgs, gen, timeout_s=_timeout(deadline))
            w.inflight += 1
            try:
                # aclosing: leaving early cancels the call and frees the worker's slot now.
                async with contextlib.aclosing(chunks):
                    async for chunk in chunks:
                        started = True
                        yield _delta(chunk, model)
                        if chunk.final:
                            return
            except (ResourceExhausted, Unavailable) as err:
                # Once text has flowed, another worker cannot continue it; the
                # router core decides (it may restart on another tier).
                if started:
                    raise
                self._skip(w, err)
                last = err
                continue
            finally:
                w.inflight -= 1
            raise Unavailable("a local worker closed the stream without a final message")
        raise last
