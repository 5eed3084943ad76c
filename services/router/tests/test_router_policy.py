from __future__ import annotations

import pytest

from rationer.errors import NotFound, PermissionDenied, Unavailable
from services.router.policy import (
    PressureConfig,
    ScoreScale,
    TierPolicy,
    TierSpec,
    pressure_of,
    shifted_threshold,
)

SMALL = TierSpec("local-small", "local", 0, "smollm2", 0.0)
LARGE = TierSpec("local-large", "local", 1, "gemma3", 0.3)
FRONTIER = TierSpec("frontier", "frontier", 2, "gpt-x", 0.6)


def policy(**kw: float) -> TierPolicy:
    return TierPolicy([FRONTIER, SMALL, LARGE], PressureConfig(**kw))  # type: ignore[arg-type]


def test_score_maps_to_tiers_in_cost_order() -> None:
    p = policy()
    assert p.decide(0.1).tier is SMALL
    assert p.decide(0.3).tier is LARGE
    assert p.decide(0.59).tier is LARGE
    assert p.decide(0.95).tier is FRONTIER


def test_pressure_formula() -> None:
    cfg = PressureConfig(start_fraction=0.5, strength=1.0)
    assert pressure_of(0.9, cfg) == 0.0
    assert pressure_of(0.25, cfg) == pytest.approx(0.5)
    assert pressure_of(0.0, cfg) == 1.0
    assert shifted_threshold(0.6, 0.5, 1.0) == pytest.approx(0.8)
    assert shifted_threshold(0.0, 1.0, 1.0) == 0.0


def test_budget_pressure_shifts_traffic_to_cheaper_tiers_gradually() -> None:
    p = policy(floor_fraction=0.01)
    scores = [i / 100 for i in range(100)]
    shares = []
    for remaining in (1.0, 0.5, 0.3, 0.1, 0.02):
        frontier = sum(p.decide(s, remaining_fraction=remaining).tier is FRONTIER for s in scores)
        shares.append(frontier)
    # Monotone and gradual: no hard wall, fewer frontier calls as budget drains.
    assert shares == sorted(shares, reverse=True)
    assert shares[0] == 40 and 0 < shares[2] < shares[0]
    d = p.decide(0.7, remaining_fraction=0.1)
    assert d.downgraded and d.unpressured is FRONTIER and d.tier.rank < FRONTIER.rank


def test_floor_forces_cheapest_allowed() -> None:
    p = policy(floor_fraction=0.05)
    d = p.decide(0.99, remaining_fraction=0.01, allowed_tiers=["local-large", "frontier"])
    assert d.tier is LARGE and d.downgraded


def test_pressure_disabled_keeps_choice() -> None:
    p = TierPolicy([SMALL, LARGE, FRONTIER], PressureConfig(enabled=False))
    assert p.decide(0.9, remaining_fraction=0.01).tier is FRONTIER


def test_allow_list_and_explicit_requests() -> None:
    p = policy()
    assert p.decide(0.99, allowed_tiers=["local-small"]).tier is SMALL
    assert p.decide(0.0, requested="frontier").tier is FRONTIER
    assert p.decide(0.0, requested="gpt-x").tier is FRONTIER  # by model name
    with pytest.raises(PermissionDenied, match="not allowed"):
        p.decide(0.0, requested="frontier", allowed_tiers=["local-small"])
    with pytest.raises(NotFound, match="unknown tier"):
        p.decide(0.0, requested="nope")
    with pytest.raises(PermissionDenied):
        p.decide(0.0, allowed_tiers=["other"])
    # The same check on its own, as the router runs it before the cache.
    assert p.check_access("gpt-x", ["frontier"])[1] is FRONTIER
    with pytest.raises(PermissionDenied, match="not allowed"):
        p.check_access("frontier", ["local-small"])


def test_health_and_fallback_order() -> None:
    p = policy()
    d = p.decide(0.95, healthy=frozenset({"local-small", "local-large"}))
    assert d.tier is LARGE
    assert p.decide(0.3).fallbacks == (SMALL, FRONTIER)
    assert p.decide(0.0).fallbacks == (LARGE, FRONTIER)
    with pytest.raises(Unavailable):
        p.decide(0.5, healthy=frozenset())
    # An explicitly requested tier that is unhealthy degrades to a cheaper
    # one, and the decision says it was downgraded.
    substituted = p.decide(0.0, requested="frontier", healthy=frozenset({"local-small"}))
    assert substituted.tier is SMALL and substituted.downgraded
    assert not p.decide(0.0, requested="frontier").downgraded


def test_score_scale_pressure_cuts_traffic_shares_not_raw_scores() -> None:
    # Real classifier scores sit in a narrow band: 50% of traffic scores >= 0.18.
    scale = ScoreScale({0.1: 0.24, 0.5: 0.18, 0.9: 0.15})
    assert scale.share_at(0.18) == pytest.approx(0.5)
    assert scale.threshold_for(0.5) == pytest.approx(0.18)
    # Half pressure at strength 1 halves the share: 50% -> 25% of traffic.
    t = shifted_threshold(0.18, 0.5, 1.0, scale)
    assert scale.share_at(t) == pytest.approx(0.25)
    assert shifted_threshold(0.18, 1.0, 1.0, scale) > 1.0  # full pressure: nobody
    assert shifted_threshold(0.18, 0.0, 1.0, scale) == pytest.approx(0.18)
