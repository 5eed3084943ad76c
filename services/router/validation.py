"""Request validation: bad input refused with a message a person can act on, defaults filled."""

from __future__ import annotations

import math

from rationer.errors import InvalidArgument
from services.router.types import CompletionRequest, GenParams, RequestLimits

ROLES = frozenset({"system", "user", "assistant"})
# The local workers accept 1..1000 (services/slm_worker/engine.py MAX_TOP_K).
MAX_TOP_K = 1000


def _check_text(value: str, what: str) -> None:
    if "\x00" in value:
        raise InvalidArgument(f"{what} contains a NUL byte; send plain UTF-8 text")


def validate(req: CompletionRequest, limits: RequestLimits) -> CompletionRequest:
    """Reject bad input with a message a person can act on; fill defaults."""
    if not req.messages:
        raise InvalidArgument("messages is empty; send at least one message with role 'user'", param="messages")
    if len(req.messages) > limits.max_messages:
        raise InvalidArgument(
            f"too many messages ({len(req.messages)}); the limit is {limits.max_messages}", param="messages"
        )
    total = 0
    for i, msg in enumerate(req.messages):
        if msg.role not in ROLES:
            raise InvalidArgument(
                f"messages[{i}].role is {msg.role!r}; use one of system, user, assistant", param=f"messages[{i}].role"
            )
        _check_text(msg.content, f"messages[{i}].content")
        total += len(msg.content)
    if not any(m.role == "user" and m.content.strip() for m in req.messages):
        raise InvalidArgument("no non-empty user message; the model needs something to answer", param="messages")
    if total > limits.max_prompt_chars:
        raise InvalidArgument(
            f"prompt is {total} characters; the gateway accepts at most {limits.max_prompt_chars}. "
            "Shorten or summarise the conversation"
        )
    for tag, value in (("project", req.project), ("user", req.user), ("model", req.model)):
        if len(value) > limits.max_tag_chars:
            raise InvalidArgument(f"{tag} is longer than {limits.max_tag_chars} characters", param=tag)
    return CompletionRequest(
        messages=req.messages,
        params=_validate_params(req.params, limits),
        model=req.model,
        allow_cache_when_sampling=req.allow_cache_when_sampling,
        no_cache=req.no_cache,
        project=req.project,
        user=req.user,
    )


def _validate_params(p: GenParams, limits: RequestLimits) -> GenParams:
    max_tokens = p.max_tokens or limits.default_max_tokens
    if max_tokens < 0:
        raise InvalidArgument(f"max_tokens is {p.max_tokens}; it must be positive", param="max_tokens")
    if max_tokens > limits.max_tokens_cap:
        raise InvalidArgument(
            f"max_tokens is {max_tokens}; the gateway allows at most {limits.max_tokens_cap}", param="max_tokens"
        )
    if p.temperature is not None and (not math.isfinite(p.temperature) or not 0 <= p.temperature <= 2):
        raise InvalidArgument(f"temperature is {p.temperature}; use a value between 0 and 2", param="temperature")
    if p.top_p is not None and (not math.isfinite(p.top_p) or not 0 < p.top_p <= 1):
        raise InvalidArgument(f"top_p is {p.top_p}; use a value in (0, 1]", param="top_p")
    if p.top_k is not None and not 1 <= p.top_k <= MAX_TOP_K:
        raise InvalidArgument(f"top_k is {p.top_k}; use a whole number from 1 to {MAX_TOP_K}", param="top_k")
    if len(p.stop) > limits.max_stop:
        raise InvalidArgument(f"{len(p.stop)} stop sequences; at most {limits.max_stop} are allowed", param="stop")
    for s in p.stop:
        if not s or len(s) > limits.max_stop_chars:
            raise InvalidArgument(f"stop sequences must be 1..{limits.max_stop_chars} characters", param="stop")
        _check_text(s, "a stop sequence")
    return GenParams(max_tokens=max_tokens, temperature=p.temperature, top_p=p.top_p, stop=p.stop, seed=p.seed,
                     top_k=p.top_k)  # fmt: skip
