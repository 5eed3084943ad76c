"""Token counts that size budget holds: exact where a tier's tokenizer is known,
a proven upper bound everywhere else.

A hold is Authorize'd for ``prompt + max_tokens`` tokens at the tier's price,
so it is an upper bound on the call's cost exactly when the prompt count is
an upper bound on the prompt tokens the model is fed (completion tokens never
pass ``max_tokens``: the worker stops at it, an OpenAI-compatible API honours
it).

Local tiers count with the worker's own code and model file
(:class:`services.slm_worker.vocab.PromptTokenizer`: the same chat template,
the same vocabulary), so the hold's prompt count equals the ``prompt_tokens``
the worker reports.

Everything else gets :class:`ByteBound`: the UTF-8 bytes of every message
plus a per-tier allowance for the chat template. Why bytes bound tokens:

* Byte-level BPE (GPT-2/tiktoken style, SmolLM2): the text is split into
  pre-tokens, each pre-token's bytes are merged into tokens, and every token
  is a non-empty byte string. So tokens <= bytes, per pre-token and in sum.
* SentencePiece with byte fallback (gemma, llama): every token is either a
  vocabulary piece covering >= 1 whole character, or one byte of a character
  no piece covers. A character of b UTF-8 bytes thus costs <= b tokens
  (1 <= b when a piece covers it, exactly b as byte fallback). Normalisation
  maps each character to one character (space -> U+2581), plus at most one
  dummy-prefix space per text: tokens <= bytes + 1, and the allowance
  covers the + 1.
* Special tokens (BOS, ``<|im_start|>``) are each one token for many bytes,
  and the ones a template adds are part of the template allowance.

So ``sum(bytes(content)) + allowance`` bounds the true count whenever the
template adds at most ``allowance`` tokens: proven for the content,
configured (``hold_template_tokens_*``) for the template the router cannot
see. The defaults (16 per message, 128 per prompt) cover ChatML-style
templates with a default system prompt of ~100 bytes (SmolLM2 through
llama_cpp.server) and OpenAI's documented 3-4 tokens per message.
tests/integration/test_router_holds.py checks the bound against the real
SmolLM2 and gemma vocabularies with hypothesis over all of Unicode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from rationer.errors import RationerError
from services.router.settings import TierSettings
from services.router.types import Message

if TYPE_CHECKING:
    from services.slm_worker.settings import ModelEntry
    from services.slm_worker.vocab import PromptTokenizer

log = structlog.get_logger(__name__)

# Above this many characters, counting (template render + tokenize) leaves the
# event loop, as the worker does for the same work.
INLINE_COUNT_CHARS = 4096


# (model, messages) -> a worker's exact count, or None when no worker answers.
WorkerCount = Callable[[str, Sequence[Message]], Awaitable[int | None]]


def utf8_bytes(text: str) -> int:
    # surrogatepass: a lone surrogate (refused later, at the door or the
    # worker) must not crash the count; it is 3 bytes either way.
    return len(text.encode("utf-8", "surrogatepass"))


class TokenCounter(Protocol):
    @property
    def exact(self) -> bool: ...

    def prompt(self, messages: Sequence[Message]) -> int: ...

    def text(self, text: str) -> int:
        """Tokens of answer text the tier sent (an upper bound unless ``exact``)."""
        ...


@dataclass(frozen=True)
class ByteBound:
    """Provably >= the tokens of any byte-level BPE or SentencePiece tokenizer."""

    per_message: int = 16
    fixed: int = 128

    @property
    def exact(self) -> bool:
        return False

    def prompt(self, messages: Sequence[Message]) -> int:
        return sum(utf8_bytes(m.content) + self.per_message for m in messages) + self.fixed

    def text(self, text: str) -> int:
        return utf8_bytes(text)


class GgufCounter:
    """The worker's exact count: its chat template and GGUF vocabulary, loaded once per tier."""

    def __init__(self, tokenizer: PromptTokenizer, fallback: ByteBound) -> None:
        # Imported lazily: a router without llama_cpp still runs, on the bound.
        self._tokenizer = tokenizer
        self._fallback = fallback

    @property
    def exact(self) -> bool:
        return True

    def prompt(self, messages: Sequence[Message]) -> int:
        from services.slm_worker.prompts import Message as WorkerMessage

        try:
            return self._tokenizer.count([WorkerMessage(m.role, m.content) for m in messages])
        except UnicodeEncodeError:
            # A lone surrogate: the worker refuses the prompt anyway.
            return self._fallback.prompt(messages)

    def text(self, text: str) -> int:
        try:
            return self._tokenizer.count_text(text)
        except UnicodeEncodeError:
            return self._fallback.text(text)

    def close(self) -> None:
        self._tokenizer.close()


async def count_prompt(counter: TokenCounter, messages: Sequence[Message]) -> int:
    if counter.exact and sum(len(m.content) for m in messages) > INLINE_COUNT_CHARS:
        return await asyncio.to_thread(counter.prompt, messages)
    return counter.prompt(messages)


def _model_entry(tier: TierSettings) -> ModelEntry | None:
    from services.slm_worker.settings import ModelEntry, default_models

    src = tier.tokenizer
    if src is not None:
        return ModelEntry(name=tier.model, tier=tier.name, path=src.path, package=src.package,
                          chat_format=src.chat_format)  # fmt: skip
    return next((m for m in default_models() if m.name == tier.model), None)


def tier_counter(tier: TierSettings, cache_dir: str) -> TokenCounter:
    """The counter a tier's holds are sized with; loads a GGUF vocabulary (blocking)."""
    bound = ByteBound(tier.hold_template_tokens_per_message, tier.hold_template_tokens_fixed)
    if tier.kind != "local":
        # No offline tokenizer for OpenAI-family models here (docs/router.md),
        # and a frontier may be any OpenAI-compatible model.
        return bound
    try:
        entry = _model_entry(tier)
        if entry is None:
            log.warning("no tokenizer for a local tier; holds use the byte bound", tier=tier.name, model=tier.model)
            return bound
        from services.slm_worker.vocab import PromptTokenizer

        return GgufCounter(PromptTokenizer.load(entry, cache_dir), bound)
    except (ImportError, RationerError, ValueError) as exc:
        log.warning("could not load a local tier's tokenizer; holds use the byte bound", tier=tier.name,
                    error=str(exc))  # fmt: skip
        return bound


# Exercises the template (system + user turns) and the vocabulary's odd corners.
PROBE = (Message("system", "Be brief."), Message("user", "Hello, wörld! ꙮ𓀀𝔘 123 \U0001f469\u200d\U0001f4bb"))


async def verify_counters(
    counters: dict[str, TokenCounter], tiers: Sequence[TierSettings], count_on_worker: WorkerCount
) -> None:
    """Check each exact counter once against a worker's CountTokens for the same model.

    A router configured with another model file than the worker serves would
    size holds on the wrong vocabulary; such a tier falls back to the byte
    bound (safe, larger holds) and the log says how to fix it.
    """
    for tier in tiers:
        counter = counters.get(tier.name)
        if counter is None or not counter.exact:
            continue
        theirs = await count_on_worker(tier.model, PROBE)
        if theirs is None:
            log.info("no worker up to check the tier's tokenizer against; checked on the next start", tier=tier.name)
            continue
        ours = counter.prompt(PROBE)
        if ours != theirs:
            log.error(
                "the router's tokenizer for this tier disagrees with the worker's model; holds use the byte "
                "bound. Point [router.tiers.tokenizer] at the GGUF the worker serves",
                tier=tier.name, router_count=ours, worker_count=theirs,
            )  # fmt: skip
            if isinstance(counter, GgufCounter):
                counter.close()
            counters[tier.name] = ByteBound(tier.hold_template_tokens_per_message, tier.hold_template_tokens_fixed)
