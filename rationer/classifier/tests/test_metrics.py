"""The routing metrics on a curve small enough to compute by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rationer.classifier import metrics

# Four prompts, routed strongest score first:
#   score  weak strong gain
#   0.9    F    T      +1
#   0.7    T    T       0
#   0.5    F    T      +1
#   0.1    T    F      -1
# quality(weak) = 0.5, quality(strong) = 0.75, gap 0.25
# quality after k strong calls: 0.5, 0.75, 0.75, 1.0, 0.75 -> PGR 0, 1, 1, 2, 1
SCORES = [0.9, 0.7, 0.5, 0.1]
WEAK = [False, True, False, True]
STRONG = [True, True, True, False]


def test_curve_points() -> None:
    curve = metrics.routing_curve(SCORES, WEAK, STRONG)
    assert curve.share.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve.quality.tolist() == pytest.approx([0.5, 0.75, 0.75, 1.0, 0.75])
    assert curve.pgr().tolist() == pytest.approx([0.0, 1.0, 1.0, 2.0, 1.0])


def test_apgr_is_the_trapezoid_area() -> None:
    curve = metrics.routing_curve(SCORES, WEAK, STRONG)
    # 0.25 * (0.5 + 1 + 1.5 + 1.5)
    assert metrics.apgr(curve) == pytest.approx(1.125)


def test_cpt_interpolates_within_a_segment() -> None:
    curve = metrics.routing_curve(SCORES, WEAK, STRONG)
    assert metrics.cpt(curve, 0.5) == pytest.approx(0.125)
    assert metrics.cpt(curve, 0.8) == pytest.approx(0.2)
    assert metrics.cpt(curve, 1.5) == pytest.approx(0.625)
    assert metrics.cpt(curve, 2.5) is None


def test_share_for_95pct_quality() -> None:
    curve = metrics.routing_curve(SCORES, WEAK, STRONG)
    # target 0.95 * 0.75 = 0.7125, reached on the first segment at 0.2125 / 0.25 of 0.25
    assert metrics.share_for_quality(curve, 0.95) == pytest.approx(0.2125)


def test_random_baseline_is_the_straight_line() -> None:
    curve = metrics.routing_curve(metrics.random_scores(4), WEAK, STRONG)
    assert curve.share.tolist() == [0.0, 1.0]
    assert metrics.apgr(curve) == pytest.approx(0.5)
    assert metrics.cpt(curve, 0.5) == pytest.approx(0.5)
    assert metrics.share_for_quality(curve, 0.95) == pytest.approx(0.85)


def test_ties_are_averaged_not_ordered_by_position() -> None:
    # The +1 and -1 prompts tie: routing them as a pair gains nothing on average,
    # whichever comes first in the input.
    for weak, strong in (([False, True, True], [True, False, True]), ([True, False, True], [False, True, True])):
        curve = metrics.routing_curve([1.0, 1.0, 0.0], weak, strong)
        assert curve.share.tolist() == pytest.approx([0.0, 2 / 3, 1.0])
        assert curve.quality_at(1 / 3) == pytest.approx(curve.quality_weak)


def test_oracle_orders_gains_first() -> None:
    curve = metrics.routing_curve(metrics.oracle_scores(WEAK, STRONG), WEAK, STRONG)
    assert curve.quality.max() == pytest.approx(1.0)
    assert metrics.cpt(curve, 2.0) == pytest.approx(0.5)


def test_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        metrics.routing_curve(np.zeros(3), WEAK, STRONG)
