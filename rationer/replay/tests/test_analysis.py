"""The replay arithmetic on a hand-built result whose every number is worked out below."""

from __future__ import annotations

import pytest

from rationer.errors import FailedPrecondition
from rationer.replay.analysis import PriceRow, Pricing, cost_nano, percentiles
from rationer.replay.summary import summarize
from rationer.replay.tests.records import TIERS, rec, result


def _records() -> list[dict[str, object]]:
    return [
        rec(0, "A", tier="local", weak=True, strong=True, tokens=(100, 8), complexity=0.1),
        rec(1, "B", tier="frontier", weak=False, strong=True, tokens=(200, 4), complexity=0.3),
        # An exact repeat of A served from the cache with A's text: a right hit.
        rec(2, "A", tier="local", hit=True, text="answer-A-local", tokens=(100, 8), variant="exact"),
        # C's first request gets B's answer from the cache: a wrong hit.
        rec(3, "C", tier="frontier", hit=True, text="answer-B-frontier", tokens=(200, 4)),
        rec(4, "D", status="denied", weak=False, strong=True),
        rec(5, "E", tier="local", weak=None, strong=None, tokens=(50, 2)),
    ]


def test_cost_formula_rounds_up_like_the_ledger() -> None:
    p = PriceRow("t", "m", 10_000_000, 20_000_000)
    assert cost_nano(100, 8, p) == 1160
    assert cost_nano(1, 0, p) == 10
    assert cost_nano(1, 0, PriceRow("t", "m", 1, 0)) == 1  # 1e-6 nano rounds up to 1


def test_policies_costs_and_quality() -> None:
    s = summarize(result(_records()))
    pol = s["policies"]
    assert pol["gateway"]["cost_nano_usd"] == 1160 + 540_000 + 540
    assert pol["all_frontier"]["cost_nano_usd"] == 330_000 + 540_000 + 330_000 + 540_000 + 350_000 + 145_000
    assert pol["cache_only"]["cost_nano_usd"] == 330_000 + 540_000 + 350_000 + 145_000
    assert pol["routing_only"]["cost_nano_usd"] == 1160 + 540_000 + 1160 + 540_000 + 350_000 + 540
    assert pol["random"]["cost_nano_usd"] == 2 * 165_580 + 2 * 271_040 + 175_620 + 72_770
    assert pol["gateway"]["quality_retained"] == pytest.approx(3 / 5)
    assert pol["all_frontier"]["quality_retained"] == pytest.approx(1.0)
    assert pol["cache_only"]["quality_retained"] == pytest.approx(4 / 5)
    assert pol["routing_only"]["quality_retained"] == pytest.approx(5 / 5)
    assert pol["random"]["quality_retained"] == pytest.approx(4 / 5)
    assert s["routing_strong_share"] == pytest.approx(0.5)
    assert pol["all_frontier"]["gateway_savings_pct"] == pytest.approx(100 * (1 - 541_700 / 2_235_000))


def test_cache_right_and_wrong_hits() -> None:
    c = summarize(result(_records()))["cache"]
    assert (c["hits"], c["wrong_hits"], c["repeats"]) == (2, 1, 1)
    assert c["wrong_hit_rate"] == pytest.approx(0.5)
    assert c["by_variant"]["exact"] == {"requests": 1, "hits": 1, "wrong_hits": 0}


def test_curve_runs_from_all_local_to_all_frontier() -> None:
    curve = summarize(result(_records()))["curve"]
    assert curve["lines"] == 3  # C and D have no score (never routed), E is unlabelled
    first, last = curve["points"][0], curve["points"][-1]
    assert first["cost_frac"] == pytest.approx(4400 / 1_200_000)
    assert first["quality_frac"] == pytest.approx(2 / 3)
    assert (last["cost_frac"], last["quality_frac"]) == (pytest.approx(1.0), pytest.approx(1.0))
    assert curve["points"][1]["quality_frac"] == pytest.approx(1.0)  # B, the top score, needed strong


def test_by_team_latency_and_events() -> None:
    recs = _records()
    recs[5] = rec(5, "E", tier="local", weak=None, strong=None, tokens=(50, 2), team="t2", downgraded=True, ts=99)
    s = summarize(result(recs))
    assert s["by_team"]["t2"]["gateway_cost_nano_usd"] == 540
    assert s["by_team"]["t2"]["all_frontier_cost_nano_usd"] == 145_000
    assert s["budget_events"]["t1"]["denials"] == 1
    assert s["budget_events"]["t2"]["downgrades"] == 1
    assert s["latency"]["end_to_end_ms"]["p50"] == 30.0
    assert s["latency"]["end_to_end_ms"]["p95"] == 60.0
    assert s["tier_mix"] == {"local": 2, "frontier": 1, "cache": 2, "denied": 1}


def test_percentiles_nearest_rank() -> None:
    assert percentiles([5.0, 1.0, 3.0, 2.0, 4.0]) == {"p50": 3.0, "p95": 5.0, "p99": 5.0, "n": 5}
    assert percentiles([])["n"] == 0


def test_missing_reference_or_price_is_actionable() -> None:
    with pytest.raises(FailedPrecondition, match="reference price"):
        Pricing([PriceRow("local", "m", 1, 1)], TIERS)
    pricing = Pricing([PriceRow("frontier", "m", 1, 1, is_reference=True)], TIERS)
    with pytest.raises(FailedPrecondition, match="'local' has no price"):
        pricing.cost("local", (1, 1))
