"""A GGUF model's chat template and vocabulary: the exact tokens fed to it.

The worker tokenizes every prompt with this, and the router loads the same
class for its local tiers to size budget holds. Sharing the code (not just
the file) is what makes the router's count equal the worker's reported
``prompt_tokens`` (tested in tests/integration/test_router_holds.py).

Loading is ``vocab_only``: no weights, no context, ~0.2 s and a few MB for
SmolLM2. Counting is ~0.1-0.4 ms for a short chat prompt (the Jinja render
dominates), versus ~1.1 ms for a CountTokens round trip to a worker
(docs/router.md, "How holds are sized").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.slm_worker.engine import load_llama
from services.slm_worker.prompts import Message, PromptFormat
from services.slm_worker.registry import resolve_model_path
from services.slm_worker.settings import ModelEntry


class PromptTokenizer:
    """Renders messages with the model's template and tokenizes them, as the worker does."""

    def __init__(self, llm: Any, prompt_format: PromptFormat) -> None:
        self._llm = llm  # a vocab-only Llama: tokenizing never touches a slot
        self.format = prompt_format

    @classmethod
    def load(cls, entry: ModelEntry, cache_dir: str | Path) -> PromptTokenizer:
        path = resolve_model_path(entry, str(cache_dir))
        return cls.from_llama(load_llama(path, entry, vocab_only=True), entry.chat_format)

    @classmethod
    def from_llama(cls, llm: Any, chat_format: str) -> PromptTokenizer:
        model = llm._model
        fmt = PromptFormat(
            chat_format,
            dict(llm.metadata),
            eos_token=model.token_get_text(llm.token_eos()) if llm.token_eos() != -1 else "",
            bos_token=model.token_get_text(llm.token_bos()) if llm.token_bos() != -1 else "",
        )
        return cls(llm, fmt)

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._llm.metadata)

    def tokenize(self, messages: Sequence[Message]) -> tuple[list[int], list[str]]:
        rendered = self.format.render(list(messages))
        # Special tokens such as <|im_start|> in the rendered text must become
        # single tokens, as in training.
        tokens: list[int] = self._llm.tokenize(rendered.text.encode("utf-8"), add_bos=rendered.add_bos, special=True)
        return tokens, rendered.stops

    def count(self, messages: Sequence[Message]) -> int:
        return len(self.tokenize(messages)[0])

    def count_text(self, text: str) -> int:
        """Tokens of plain text (no template, no BOS), e.g. a streamed answer."""
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def close(self) -> None:
        self._llm.close()
