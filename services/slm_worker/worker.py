"""The worker's domain: its models, request validation, and generation.

No gRPC here: the servicer converts messages and calls these methods; errors
are ``rationer.errors`` classes that the platform interceptor maps.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import structlog

from rationer.errors import InvalidArgument, NotFound
from services.slm_worker.engine import (
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    MAX_TOP_K,
    GenerationOutcome,
    GenerationRequest,
    TextPiece,
)
from services.slm_worker.pool import PoolLoad, SlotPool
from services.slm_worker.prompts import ROLES, Message
from services.slm_worker.settings import ModelEntry
from services.slm_worker.vocab import PromptTokenizer

log = structlog.get_logger(__name__)


# llama.cpp's LLAMA_DEFAULT_SEED (0xFFFFFFFF) means random; seeds stop below it.
MAX_SEED = 0xFFFFFFFE


@dataclass(frozen=True)
class Params:
    max_tokens: int = 0
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    top_k: int | None = None


@dataclass(frozen=True)
class Limits:
    max_stop_sequences: int = 8
    max_stop_bytes: int = 64


@dataclass(frozen=True)
class ModelStatus:
    name: str
    tier: str
    context_size: int
    quantization: str
    device: str
    chat_format: str
    load: PoolLoad


class LoadedModel:
    """One configured model: its tokenizer/template and its slot pool."""

    def __init__(
        self,
        entry: ModelEntry,
        tokenizer: PromptTokenizer,
        pool: SlotPool,
        quantization: str,
        device: str = "cpu",
    ) -> None:
        self.entry = entry
        self.tokenizer = tokenizer  # template + vocab-only Llama: tokenizing never touches a slot
        self.pool = pool
        self.quantization = quantization
        self.device = device  # "gpu" only when layers are offloaded by a GPU-enabled build

    def tokenize(self, messages: list[Message]) -> tuple[list[int], list[str]]:
        return self.tokenizer.tokenize(messages)


class Worker:
    def __init__(self, models: list[LoadedModel], *, worker_id: str = "", limits: Limits = Limits()) -> None:
        self._models = {m.entry.name: m for m in models}
        self._tiers: dict[str, LoadedModel] = {}
        for m in models:
            self._tiers.setdefault(m.entry.tier, m)
        self.worker_id = worker_id
        self._limits = limits

    def model(self, name: str) -> LoadedModel:
        found = self._models.get(name) or self._tiers.get(name)
        if found is None:
            known = sorted({*self._models, *self._tiers})
            raise NotFound(f"model {name!r} is not served by this worker; it serves {known}")
        return found

    def list_models(self) -> list[ModelStatus]:
        return [
            ModelStatus(
                name=m.entry.name,
                tier=m.entry.tier,
                context_size=m.entry.n_ctx,
                quantization=m.quantization,
                device=m.device,
                chat_format=m.tokenizer.format.name,
                load=m.pool.load(),
            )
            for m in self._models.values()
        ]

    async def count_tokens(self, model: str, messages: list[Message]) -> int:
        loaded = self.model(model)
        _check_messages(messages)
        tokens, _ = await _tokenize(loaded, messages)
        return len(tokens)

    async def generate(
        self, model: str, messages: list[Message], params: Params, *, timeout_s: float | None = None
    ) -> AsyncGenerator[TextPiece | GenerationOutcome, None]:
        """Text pieces, then one GenerationOutcome (see SlotPool.generate)."""
        arrived = time.perf_counter()
        loaded = self.model(model)
        _check_messages(messages)
        self._check_params(params)
        tokens, format_stops = await _tokenize(loaded, messages)
        req = GenerationRequest(
            prompt_tokens=tokens,
            max_tokens=_max_tokens(loaded.entry, len(tokens), params.max_tokens),
            temperature=DEFAULT_TEMPERATURE if params.temperature is None else params.temperature,
            top_p=DEFAULT_TOP_P if params.top_p is None else params.top_p,
            top_k=DEFAULT_TOP_K if params.top_k is None else params.top_k,
            stop=[*params.stop, *format_stops],
            seed=params.seed,
            deadline=None if timeout_s is None else time.monotonic() + timeout_s,
            arrived=arrived,
        )
        # aclosing: if our consumer stops early, the pool's generator is closed
        # now (setting the slot's cancel flag), not whenever it is collected.
        async with contextlib.aclosing(loaded.pool.generate(req)) as items:
            async for item in items:
                yield item

    def _check_params(self, p: Params) -> None:
        if p.max_tokens < 0:
            raise InvalidArgument(f"max_tokens must be >= 0 (0 = the model default), got {p.max_tokens}")
        if p.temperature is not None and (not math.isfinite(p.temperature) or p.temperature < 0):
            raise InvalidArgument(f"temperature must be a finite number >= 0, got {p.temperature}")
        if p.seed is not None and not 0 <= p.seed <= MAX_SEED:
            # llama.cpp reads 0xFFFFFFFF as "pick a random seed": the same seed
            # would then not give the same text.
            raise InvalidArgument(f"seed must be between 0 and {MAX_SEED}, got {p.seed}")
        if p.top_p is not None and not (0 < p.top_p <= 1):
            raise InvalidArgument(f"top_p must be in (0, 1], got {p.top_p}")
        if p.top_k is not None and not 1 <= p.top_k <= MAX_TOP_K:
            raise InvalidArgument(f"top_k must be between 1 and {MAX_TOP_K}, got {p.top_k}")
        if len(p.stop) > self._limits.max_stop_sequences:
            raise InvalidArgument(
                f"at most {self._limits.max_stop_sequences} stop sequences are allowed, got {len(p.stop)}"
            )
        for s in p.stop:
            _check_text(s, "stop sequence")
            size = len(s.encode("utf-8"))
            if not s or size > self._limits.max_stop_bytes:
                raise InvalidArgument(f"each stop sequence must be 1..{self._limits.max_stop_bytes} bytes, got {size}")
            _check_text(s, "stop sequence")

    def drain(self) -> None:
        for m in self._models.values():
            m.pool.drain()

    async def drain_async(self) -> None:
        self.drain()

    def close(self) -> None:
        for m in self._models.values():
            m.pool.close()
            m.tokenizer.close()


# Below this many characters, templating + tokenizing takes tens of
# microseconds: cheaper inline than the two thread hops of to_thread, which
# showed up in time-to-first-token. Longer prompts go to a thread.
INLINE_TOKENIZE_CHARS = 4096


async def _tokenize(loaded: LoadedModel, messages: list[Message]) -> tuple[list[int], list[str]]:
    if sum(len(m.content) for m in messages) <= INLINE_TOKENIZE_CHARS:
        return loaded.tokenize(messages)
    return await asyncio.to_thread(loaded.tokenize, messages)


def _check_text(text: str, what: str) -> None:
    if "\x00" in text:
        raise InvalidArgument(f"{what} contains a NUL byte; remove it")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise InvalidArgument(f"{what} is not valid UTF-8 (lone surrogate)")


def _check_messages(messages: list[Message]) -> None:
    if not messages:
        raise InvalidArgument("messages is empty; send at least one user message")
    for i, m in enumerate(messages):
        if m.role not in ROLES:
            raise InvalidArgument(f"messages[{i}].role {m.role!r} is not one of {list(ROLES)}")
        _check_text(m.content, f"messages[{i}].content")


def _max_tokens(entry: ModelEntry, prompt_tokens: int, requested: int) -> int:
    room = entry.n_ctx - prompt_tokens
    if room < 1:
        raise InvalidArgument(
            f"the prompt is {prompt_tokens} tokens after the chat template but model {entry.name!r} "
            f"has a context of {entry.n_ctx}; shorten it or use a larger tier"
        )
    if requested == 0:
        return min(entry.default_max_tokens, room)
    if requested > room:
        raise InvalidArgument(
            f"max_tokens {requested} plus the {prompt_tokens}-token prompt exceeds model "
            f"{entry.name!r}'s context of {entry.n_ctx}; ask for at most {room}"
        )
    return requested
