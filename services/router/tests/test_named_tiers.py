"""A named tier is never silently replaced (issue 18 item 6), against fake ports."""

from __future__ import annotations

import pytest

from rationer.errors import Unavailable
from services.router.substitute import hide_addresses, may_substitute
from services.router.tests.fakes import KEY, PRINCIPAL, Fakes, request


async def test_a_named_tier_that_is_not_ready_is_503_naming_it_not_another_tier() -> None:
    fakes = Fakes()
    fakes.backends["big"].up = False
    with pytest.raises(Unavailable, match=r"tier 'big' is unavailable.*no other tier was used") as down:
        await fakes.core().complete(KEY, request(model="big"))
    assert "127.0.0.1" not in down.value.message
    assert fakes.ledger.holds == [] and fakes.backends["small"].calls == 0


async def test_a_named_tier_that_fails_is_not_replaced_and_its_hold_is_released() -> None:
    fakes = Fakes()
    fakes.backends["big"].error = Unavailable("worker 127.0.0.1:7403: connection refused")
    with pytest.raises(Unavailable) as down:
        await fakes.core().complete(KEY, request(model="big-model"))
    assert "model 'big-model' (tier 'big') is unavailable" in down.value.message
    assert "127.0.0.1" not in down.value.message and ":7403" not in down.value.message
    assert fakes.backends["small"].calls == 0 and len(fakes.ledger.releases) == 1


async def test_a_budget_denial_on_a_named_tier_is_not_downgraded() -> None:
    fakes = Fakes()
    fakes.ledger.deny["big"] = "budget:team:t"
    with pytest.raises(Exception, match="budget"):
        await fakes.core().complete(KEY, request(model="big"))
    assert fakes.ledger.holds == []


@pytest.mark.parametrize("who", ["*", "key:k_1", "team:t", "org:o"])
async def test_a_key_whose_policy_allows_fallback_is_served_and_told(who: str) -> None:
    fakes = Fakes()
    fakes.backends["big"].up = False
    _, res = await fakes.core(fallback_for=(who,)).complete(KEY, request(model="big"))
    assert res.tier == "small" and res.fallbacks == ["big"] and res.downgraded


async def test_a_named_tier_that_fails_mid_call_falls_back_when_allowed() -> None:
    fakes = Fakes()
    fakes.backends["big"].error = Unavailable("down")
    _, res = await fakes.core(fallback_for=("*",)).complete(KEY, request(model="big"))
    assert res.tier == "small" and res.fallbacks == ["big"]


async def test_a_named_stream_is_not_replaced_either() -> None:
    fakes = Fakes()
    fakes.backends["big"].up = False
    with pytest.raises(Unavailable, match="tier 'big' is unavailable"):
        async for _ in fakes.core().stream(KEY, request(model="big")):
            pass


def test_unready_lists_the_tiers_that_cannot_serve() -> None:
    fakes = Fakes()
    fakes.backends["big"].up = False
    core = fakes.core()
    assert core.ready() == ["small"] and core.unready() == ["big"]


def test_policy_matching_and_address_hiding() -> None:
    assert not may_substitute(PRINCIPAL, ()) and not may_substitute(PRINCIPAL, ("key:k_2", "team:x"))
    assert may_substitute(PRINCIPAL, ("team:t",))
    assert hide_addresses("worker 127.0.0.1:7403: refused; http://10.0.0.2:8000/v1, [::1]:7401, localhost:80") == (
        "a local worker: refused; http://<internal>/v1, <internal>, <internal>"
    )
    assert hide_addresses("max_tokens 4096 of 2048; version 1.2.3") == "max_tokens 4096 of 2048; version 1.2.3"
