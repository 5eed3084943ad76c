"""One llama.cpp context (a "slot") and the blocking generation loop on it.

Everything here blocks and is meant to run on the slot's own thread, never on
the event loop. Between tokens the loop checks a cancel flag and the client's
deadline, so a cancelled call frees its slot after at most one more token.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from rationer.errors import FailedPrecondition
from services.slm_worker.settings import ModelEntry
from services.slm_worker.textstream import TokenTextDecoder

log = structlog.get_logger(__name__)

# Llama(verbose=False) redirects file descriptors 1 and 2 while it loads; two
# loads racing on threads can leave stdout pointing at /dev/null for good.
_LOAD_LOCK = threading.Lock()

# Prompt tokens read per uninterruptible llama.cpp call before a cancel check.
PREFILL_CHUNK = 128
# llama.cpp's "pick a random seed" value.
RANDOM_SEED = 0xFFFFFFFF
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40  # llama.cpp's own default
# Above a few thousand the filter is a no-op on these vocabularies (49k-262k) but costs a sort.
MAX_TOP_K = 1000


@dataclass
class GenerationRequest:
    prompt_tokens: list[int]
    max_tokens: int
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    top_k: int = DEFAULT_TOP_K
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    deadline: float | None = None  # time.monotonic() value
    arrived: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class TextPiece:
    """Answer text as it is produced, with the running token counts.

    ``completion_tokens`` counts every token generated so far, including any
    whose text is still held back (half a UTF-8 character, a possible start
    of a stop sequence): what a caller that stops reading here has used.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int


# Called on the slot's thread with each piece of text and the number of
# tokens generated so far.
Emit = Callable[[str, int], None]


@dataclass
class GenerationOutcome:
    # "stop", "length", "cancelled" or "deadline"
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_ms: float
    generation_ms: float
    # From the first token to the end: the decode speed's denominator, free
    # of prompt reading (a long prompt would otherwise look like a slow model).
    decode_ms: float = 0.0


def load_llama(path: Path, entry: ModelEntry, *, vocab_only: bool = False) -> Any:
    """Load one llama.cpp model+context; a corrupt file becomes FailedPrecondition."""
    from llama_cpp import Llama

    with _LOAD_LOCK:
        try:
            return Llama(
                model_path=str(path),
                n_ctx=entry.n_ctx,
                n_batch=min(entry.n_batch, entry.n_ctx),
                n_threads=entry.n_threads,
                n_threads_batch=entry.n_threads,
                n_gpu_layers=entry.n_gpu_layers,
                vocab_only=vocab_only,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise FailedPrecondition(
                f"model {entry.name!r}: llama.cpp could not load {path} ({exc}); "
                "the file is corrupt, truncated or not a supported GGUF model"
            ) from exc


class Slot:
    """One context of one model; only ever used by one thread at a time."""

    def __init__(self, llm: Any, index: int) -> None:
        import llama_cpp

        self.index = index
        self._llm = llm
        self._vocab = llm._model.vocab
        self._is_eog: Callable[[Any, int], bool] = llama_cpp.llama_vocab_is_eog
        self._to_piece: Callable[..., int] = llama_cpp.llama_token_to_piece
        self._buf = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}

    def piece(self, token: int) -> bytes:
        """The token's bytes (may be part of a UTF-8 character); cached per token."""
        cached = self._pieces.get(token)
        if cached is None:
            n = self._to_piece(self._vocab, token, self._buf, len(self._buf), 0, False)
            if n < 0:  # llama.cpp asks for a bigger buffer: -n bytes
                self._buf = ctypes.create_string_buffer(-n)
                n = self._to_piece(self._vocab, token, self._buf, len(self._buf), 0, False)
            cached = self._buf.raw[: max(n, 0)]
            self._pieces[token] = cached
        return cached

    def close(self) -> None:
        self._llm.close()

    @property
    def evaluated_tokens(self) -> int:
        """How many tokens this context holds (the KV cache's length)."""
        return int(self._llm.n_tokens)

    def _prefill(self, req: GenerationRequest, cancel: threading.Event) -> str:
        """Read a long prompt in chunks, stopping between them on cancel or deadline.

        llama.cpp reads a prompt inside one call that cannot be interrupted, so
        a long prompt would keep a slot busy for seconds after its caller left.
        All but the last token are evaluated here; ``generate`` then finds them
        in the cache (its prefix match) and evaluates only the last one. A
        short prompt skips this: the extra decode step would cost more than
        the prompt itself.
        """
        prompt, llm = req.prompt_tokens, self._llm
        if len(prompt) <= PREFILL_CHUNK:
            return ""
        keep = 0  # what this context already holds from its previous prompt
        for a, b in zip(llm._input_ids, prompt[:-1], strict=False):
            if a != b:
                break
            keep += 1
        llm.n_tokens = keep  # eval drops the KV cache from here on
        for i in range(keep, len(prompt) - 1, PREFILL_CHUNK):
            stop = self._should_stop(req, -1, cancel)
            if stop:
                return stop
            llm.eval(prompt[i : min(i + PREFILL_CHUNK, len(prompt) - 1)])
        return ""

    def run(self, req: GenerationRequest, emit: Emit, cancel: threading.Event) -> GenerationOutcome:
        """Generate until a stop, ``max_tokens``, cancel or the deadline."""
        llm = self._llm
        llm.set_seed(RANDOM_SEED if req.seed is None else req.seed)
        decoder = TokenTextDecoder(req.stop)
        started = time.perf_counter()
        first: float | None = None
        produced = 0
        reason = "length"
        matched_stop = False
        tokens = llm.generate(
            req.prompt_tokens,
            temp=max(req.temperature, 0.0),
            top_p=req.top_p,
            top_k=req.top_k,
            min_p=0.05,
            repeat_penalty=1.0,
            reset=True,
        )
        early = self._prefill(req, cancel) or ("cancelled" if cancel.is_set() else "")
        if early:
            reason = early
        else:
            for tok in tokens:
                if self._is_eog(self._vocab, tok):
                    reason = "stop"
                    break
                produced += 1
                if first is None:
                    first = time.perf_counter()
                text, stopped = decoder.feed(self.piece(tok))
                if text:
                    emit(text, produced)
                if stopped:
                    reason, matched_stop = "stop", True
                    break
                reason = self._should_stop(req, produced, cancel)
                if reason:
                    break
        if not matched_stop:
            # Text held back because it might have begun a stop sequence is
            # the answer's own once nothing more can follow (end of sequence,
            # max_tokens, cancel): dropping it would cut the answer short.
            tail = decoder.flush()
            if tail:
                emit(tail, produced)
        ended = time.perf_counter()
        return GenerationOutcome(
            finish_reason=reason or "length",
            prompt_tokens=len(req.prompt_tokens),
            completion_tokens=produced,
            time_to_first_token_ms=((first or ended) - req.arrived) * 1000.0,
            generation_ms=(ended - started) * 1000.0,
            decode_ms=(ended - first) * 1000.0 if first is not None else 0.0,
        )

    @staticmethod
    def _should_stop(req: GenerationRequest, produced: int, cancel: threading.Event) -> str:
        if 0 <= req.max_tokens <= produced:
            return "length"
        if cancel.is_set():
            return "cancelled"
        if req.deadline is not None and time.monotonic() >= req.deadline:
            return "deadline"
        return ""
