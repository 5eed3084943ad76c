"""Binds the cache's key rules (``services.cache.keys``) to router requests."""

from __future__ import annotations

from collections.abc import Sequence

from services.cache import keys
from services.router.types import CompletionRequest, Message


def _dicts(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def canonicalize(messages: Sequence[Message]) -> str:
    return keys.canonical_text(_dicts(messages))


def context_of(req: CompletionRequest) -> dict[str, object]:
    p = req.params
    answer_changing = {
        k: v
        for k, v in {"stop": list(p.stop), "seed": p.seed, "top_p": p.top_p, "temperature": p.temperature}.items()
        if v not in (None, [])
    }
    return {
        # An explicit model/tier pins the answer's source; "auto" answers may
        # come from any tier.
        "tier_class": req.model or "auto",
        "system_prompt": keys.system_prompt(_dicts(req.messages)),
        "max_tokens": p.max_tokens,
        "params_digest": keys.params_digest(answer_changing),
    }


def cacheable(req: CompletionRequest) -> bool:
    if req.no_cache:
        return False
    return keys.is_cacheable(req.params.temperature, allow_sampled=req.allow_cache_when_sampling)
