"""Routing by context length (issue 18 item 8), against fake ports."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rationer.errors import InvalidArgument
from services.router.pipeline import RouterCore
from services.router.tests.fakes import KEY, PRINCIPAL, Fakes, request
from services.router.types import Message, Principal


class CharCounter:
    """An exact tokenizer: one token per character, plus 10 for the template."""

    exact = True

    def prompt(self, messages: Sequence[Message]) -> int:
        return sum(len(m.content) for m in messages) + 10

    def text(self, text: str) -> int:
        return len(text)


def _fakes(small: int | None = 100, big: int | None = None) -> Fakes:
    fakes = Fakes()
    fakes.backends["small"].context, fakes.backends["big"].context = small, big
    return fakes


def _core(fakes: Fakes, exact: bool = True, fallback_for: tuple[str, ...] = ()) -> RouterCore:
    core = fakes.core(fallback_for=fallback_for)
    if exact:
        core.holds._counters = {"small": CharCounter(), "big": CharCounter()}
    return core


async def test_a_prompt_that_fits_stays_on_the_cheap_tier() -> None:
    fakes = _fakes()
    _, res = await _core(fakes).complete(KEY, request("x" * 50, max_tokens=16))
    assert res.tier == "small"


async def test_auto_sends_a_prompt_too_long_for_the_local_window_to_a_tier_that_fits() -> None:
    fakes = _fakes(small=100, big=10_000)
    _, res = await _core(fakes).complete(KEY, request("x" * 200, max_tokens=16))
    assert res.tier == "big" and fakes.backends["small"].calls == 0 and res.fallbacks == []


async def test_max_tokens_counts_against_the_window() -> None:
    fakes = _fakes(small=100)
    _, res = await _core(fakes).complete(KEY, request("x" * 60, max_tokens=40))  # 70 + 40 > 100
    assert res.tier == "big"


async def test_no_tier_that_fits_is_400_naming_the_largest_window() -> None:
    fakes = _fakes(small=100, big=150)
    with pytest.raises(InvalidArgument, match=r"prompt is 510 tokens.*150 tokens \(tier 'big'\)") as bad:
        await _core(fakes).complete(KEY, request("x" * 500, max_tokens=16))
    assert bad.value.param == "messages" and fakes.ledger.holds == []


async def test_a_named_tier_that_cannot_take_the_prompt_is_400_naming_its_limit() -> None:
    fakes = _fakes(small=100, big=10_000)
    with pytest.raises(InvalidArgument, match=r"tier 'small' has a context window of 100 tokens"):
        await _core(fakes, fallback_for=("*",)).complete(KEY, request("x" * 200, model="small"))
    assert fakes.ledger.holds == []


async def test_a_key_limited_to_the_small_tier_gets_400_not_a_worker_error() -> None:
    fakes = _fakes(small=100, big=10_000)
    fakes.ledger.principal = Principal(**{**PRINCIPAL.__dict__, "allowed_tiers": ("small",)})
    with pytest.raises(InvalidArgument, match=r"100 tokens \(tier 'small'\); shorten the prompt"):
        await _core(fakes).complete(KEY, request("x" * 200))


async def test_an_upper_bound_that_does_not_fit_is_tried_last_not_refused() -> None:
    fakes = _fakes(small=100, big=None)
    _, res = await _core(fakes, exact=False).complete(KEY, request("x" * 200))
    assert res.tier == "big"  # the byte bound says "maybe" for small; big has no known window
    fakes = _fakes(small=100, big=100)
    _, res = await _core(fakes, exact=False).complete(KEY, request("x" * 200))
    assert res.tier == "small"  # nothing surely fits: try in plan order, the worker has the last word
