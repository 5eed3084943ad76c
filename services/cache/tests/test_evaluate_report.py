"""``rationer eval cache`` states each target as met or by how much it is missed."""

from __future__ import annotations

import pytest

from services.cache.evaluate import check_targets


def test_a_missed_target_says_by_how_much() -> None:
    sets = {
        "fow-cache": {
            "verifier": {"recall": 0.447, "false_hit": {"fow-cache": 2 / 149}},
            "cosine_at_same_false_hit": 0.1,
        },
        "msrp": {"verifier": {"recall": 0.035, "false_hit": {"msrp": 0.0017}}, "cosine_at_same_false_hit": 0.037},
    }
    got = {(t["data"], t["metric"]): t for t in check_targets(sets)}
    assert not got[("fow-cache", "recall")]["met"]
    assert got[("fow-cache", "recall")]["miss_by"] == pytest.approx(0.153)
    assert got[("fow-cache", "false_hit:fow-cache")]["miss_by"] == pytest.approx(2 / 149 - 0.01)
    assert got[("msrp", "false_hit:msrp")] | {"value": 0} == {
        "data": "msrp", "metric": "false_hit:msrp", "value": 0, "target": "<= 0.01", "met": True, "miss_by": 0.0}
    assert got[("msrp", "recall_vs_cosine")]["miss_by"] == pytest.approx(0.002)
    assert ("sick", "recall") not in got  # only the sets that were evaluated
