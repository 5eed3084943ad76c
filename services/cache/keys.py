"""What a cache key covers, shared with the router (no gRPC imports here).

* :func:`canonical_text` turns a whole conversation into the text that is
  embedded and hashed: every turn, with its role, not just the last message
  (fow-cache's conversation pairs show last-message keys serve wrong answers
  when the earlier turns differ).
* :func:`context_key` digests what the answer depends on besides the text:
  tier class or pinned model, system prompt, max_tokens and other
  answer-changing parameters (:func:`params_digest`). Entries only match
  requests with the same context key.
* :func:`is_cacheable` is the policy: sampled requests (temperature > 0) are
  neither served from nor stored to the cache unless the caller opts in.
* :func:`normalize` is the exact-match fast path's normalisation.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

_SPACE = re.compile(r"\s+")
_EDGE_PUNCT = " \t\n.?!,;:"
ROLES = ("system", "developer", "user", "assistant", "tool")


def _clean(text: str) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def canonical_text(messages: Iterable[Mapping[str, Any]], *, include_system: bool = False) -> str:
    """One line per turn, ``"role: content"``, newest turn first.

    Newest first because the embedder reads at most 256 tokens: the question
    being asked and the turns just before it must be inside that window, not
    cut off behind a long history. Every turn is still in the text (and so in
    the exact-match hash and the guard's comparison). System/developer
    messages are left out by default because the router puts the system
    prompt into :class:`CacheContext` (so it is matched exactly, not by
    similarity); pass ``include_system=True`` to keep them in the text.
    Content given as a list of parts (OpenAI style) contributes its text parts.

    A conversation that is a single user turn is just that turn's text, with
    no role prefix: the same text the complexity classifier was trained on,
    so the router's one embedding serves both the cache and the classifier.
    """
    turns: list[tuple[str, str]] = []
    for message in messages:
        role = str(message.get("role", "user")).strip().lower() or "user"
        if role in ("system", "developer") and not include_system:
            continue
        turns.append((role, _clean(_content_text(message.get("content")))))
    if len(turns) == 1 and turns[0][0] == "user":
        return turns[0][1]
    return "\n".join(f"{role}: {text}" for role, text in reversed(turns))


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content]
        return " ".join(str(p) for p in parts if p)
    return str(content)


def system_prompt(messages: Iterable[Mapping[str, Any]]) -> str:
    """The concatenated system/developer messages, for ``CacheContext.system_prompt``."""
    return "\n".join(
        _clean(_content_text(m.get("content")))
        for m in messages
        if str(m.get("role", "")).lower() in ("system", "developer")
    )


def normalize(text: str) -> str:
    """Exact-match normalisation: Unicode NFKC, case-folded, whitespace
    collapsed, surrounding punctuation dropped ("What is X?" == "what is x")."""
    return _clean(text).casefold().strip(_EDGE_PUNCT)


def params_digest(params: Mapping[str, Any]) -> str:
    """Digest of other answer-changing generation parameters (stop sequences,
    response format, tools, seed, ...). Order-independent; empty for none."""
    if not params:
        return ""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def context_key(tier_class: str = "", system_prompt: str = "", max_tokens: int = 0, params_digest: str = "") -> str:
    """The part of the key that must match exactly."""
    blob = json.dumps([tier_class, system_prompt, int(max_tokens), params_digest])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def exact_key(context: str, text: str) -> str:
    """Hash for the exact-match fast path (tenant is a separate column)."""
    return hashlib.sha256(f"{context}\x00{normalize(text)}".encode()).hexdigest()


def is_cacheable(
    temperature: float | None,
    *,
    allow_sampled: bool = False,
    n: int = 1,
    stream: bool = False,
) -> bool:
    """Whether a request may be served from (and stored to) the cache.

    A request sampled with temperature > 0 asks for a fresh draw; serving it a
    stored answer silently changes its semantics, so it is only cacheable when
    the tenant or caller opted in (``allow_sampled``). ``n > 1`` asks for
    several distinct answers and is never cacheable. Streaming is cacheable
    (the router replays the stored answer as a stream); ``stream`` is accepted
    so callers can pass the request through unchanged.
    """
    del stream
    if n != 1:
        return False
    sampled = temperature is not None and temperature > 0
    return allow_sampled or not sampled
