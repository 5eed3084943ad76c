"""Routing by context length: a prompt goes only to tiers whose context window can take it.

A tier fits when its prompt count plus ``max_tokens`` is within its context
window (local tiers: the worker's ``n_ctx``, 2,048 by default; frontier
tiers: ``tiers[].context_window``, unknown when unset). The count is the
hold's (``Holds.prompt_tokens``, counted once per tier): exact with the
tier's own tokenizer, else a proven upper bound. An upper bound that does
not fit may still fit, so such a tier is kept, after the tiers that surely
fit. With ``auto`` the plan keeps its order among the tiers that fit; a tier
the request named that cannot take the prompt, or a plan with no tier
left, is a 400 naming the limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from rationer.errors import InvalidArgument
from services.router.holds import Holds
from services.router.policy import TierSpec
from services.router.ports import ModelBackend
from services.router.types import Prepared

FITS, MAYBE, NO = "fits", "maybe", "no"


async def fit_plan(prep: Prepared, holds: Holds, backends: Mapping[str, ModelBackend], named: TierSpec | None) -> None:
    """Narrow ``prep.plan`` to the tiers the prompt fits; InvalidArgument when none (or not the named one) does."""
    plan = prep.plan
    assert plan is not None
    max_tokens = prep.request.params.max_tokens
    verdicts: dict[str, tuple[str, int, int]] = {}
    for tier in {t.name: t for t in (*plan.tiers, *plan.downgrades)}.values():
        verdicts[tier.name] = await _verdict(prep, holds, backends[tier.name], tier, max_tokens)
    if named is not None and verdicts.get(named.name, (FITS, 0, 0))[0] == NO:
        _, prompt, window = verdicts[named.name]
        raise _too_long(f"tier {named.name!r} has a context window of {window} tokens", prompt, max_tokens, window)
    tiers = _ordered(plan.tiers, verdicts)
    if not tiers:
        window, name = max((verdicts[t.name][2], t.name) for t in plan.tiers)
        limit = f"the largest context window among the tiers this key can use is {window} tokens (tier {name!r})"
        raise _too_long(limit, verdicts[name][1], max_tokens, window)
    prep.plan = dataclasses.replace(plan, tiers=tiers, downgrades=_ordered(plan.downgrades, verdicts, keep=True))


async def _verdict(
    prep: Prepared, holds: Holds, backend: ModelBackend, tier: TierSpec, max_tokens: int
) -> tuple[str, int, int]:
    window = backend.context_window(tier.model)
    if window is None:
        return FITS, 0, 0
    prompt = await holds.prompt_tokens(prep, tier)
    if prompt + max_tokens <= window:
        return FITS, prompt, window
    return (NO if holds.counter(tier).exact else MAYBE), prompt, window


def _ordered(tiers: tuple[TierSpec, ...], verdicts: dict[str, tuple[str, int, int]], keep: bool = False
             ) -> tuple[TierSpec, ...]:  # fmt: skip
    sure = [t for t in tiers if verdicts[t.name][0] == FITS]
    maybe = [t for t in tiers if verdicts[t.name][0] == MAYBE]
    return tuple(sure + maybe) if not keep else tuple(t for t in tiers if verdicts[t.name][0] != NO)


def _too_long(limit: str, prompt: int, max_tokens: int, window: int) -> InvalidArgument:
    room = window - prompt
    hint = f"ask for at most {room} (max_tokens) or shorten the prompt" if room > 0 else "shorten the prompt"
    return InvalidArgument(
        f"the prompt is {prompt} tokens and max_tokens is {max_tokens}, which does not fit: {limit}; {hint}, "
        "or use a tier with a larger context window",
        param="messages",
    )
