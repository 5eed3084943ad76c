"""fow-cache's train/test split: disjoint texts, half of each category on each
side, the same every run, and no test row in the verifier's fit or calibration."""

from __future__ import annotations

from collections import Counter

import pytest

from rationer.errors import InvalidArgument
from services.cache import pairsets, verifier_train
from services.cache.keys import normalize


def test_the_fow_cache_split_keeps_every_text_on_one_side_and_halves_each_category() -> None:
    train, test = pairsets.fow_questions("train"), pairsets.fow_questions("test")
    assert len(train) + len(test) == len(pairsets.fow_questions()) == 600
    texts = {side: {normalize(t) for p in ps for t in (p.a, p.b)} for side, ps in (("train", train), ("test", test))}
    assert not texts["train"] & texts["test"]
    by_group = Counter(p.group for p in train), Counter(p.group for p in test)
    for group in ("paraphrase", "near_repeat", "negation", "entity_swap", "number_date", "scope"):
        n_train, n_test = by_group[0][group], by_group[1][group]
        assert abs(n_train - n_test) <= 0.1 * (n_train + n_test), (group, n_train, n_test)
    assert [p.b for p in pairsets.fow_questions("test")] == [p.b for p in test]  # deterministic
    with pytest.raises(InvalidArgument, match="splits"):
        pairsets.fow_questions("dev")


def test_no_test_split_is_fitted_or_calibrated_on() -> None:
    for ds, split in verifier_train.TEST_SETS:
        assert (ds, split) not in verifier_train.FIT_SETS and (ds, split) not in verifier_train.CALIBRATION_SETS
        assert (ds, "all") not in verifier_train.FIT_SETS + verifier_train.CALIBRATION_SETS
    assert ("fow-cache", "test") in verifier_train.TEST_SETS


def test_conversations_are_keyed_as_the_cache_keys_them() -> None:
    whole, last = pairsets.fow_conversations(), pairsets.fow_conversations(last_message=True)
    assert len(whole) == len(last) == 240
    assert all(len(w.a) >= len(lm.a) for w, lm in zip(whole, last, strict=True))
    assert {p.same_answer for p in whole} == {True, False}
