"""The verifier: operating point from the shipped curve, the model's
monotonicity (cosine proposes, lexical evidence vetoes), and the cache's use
of it, with the real ONNX artifact and the real embedder."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rationer.embedding.batcher import MicroBatcher
from rationer.errors import FailedPrecondition, InvalidArgument
from services.cache.cache import SemanticCache
from services.cache.pair_features import FEATURE_NAMES, N_FEATURES, pair_features
from services.cache.types import LookupQuery, StoreCommand
from services.cache.verifier import LEXICAL_SCORE, NEVER, Verifier, operating_point
from testsupport.cache import shared_embedder

CURVE = {
    "thresholds": [0.1, 0.5, 0.8, 0.9, 1.0],
    "false_hit": {"a": [0.5, 0.05, 0.01, 0.0, 0.0], "b": [0.4, 0.2, 0.02, 0.005, 0.0]},
    "recall": {"a": [1.0, 0.8, 0.5, 0.3, 0.0]},
}


def test_the_bound_picks_the_lowest_threshold_within_it_on_every_group() -> None:
    assert operating_point(CURVE, 0.01).threshold == 0.9  # group b needs 0.9, a alone 0.8
    assert operating_point(CURVE, 0.02).threshold == 0.8
    p = operating_point(CURVE, 0.3)
    assert p.threshold == 0.5 and p.recall == {"a": 0.8} and p.false_hit == {"a": 0.05, "b": 0.2}
    none_fits = {**CURVE, "false_hit": {"a": [0.5, 0.4, 0.3, 0.2, 0.1]}}
    assert operating_point(none_fits, 0.01).threshold == NEVER


@pytest.mark.parametrize("bound", [0.0, 1.0, -0.1, 2.0])
def test_a_bound_outside_0_1_is_refused(bound: float) -> None:
    with pytest.raises(InvalidArgument, match="max_false_hit_rate must be in"):
        operating_point(CURVE, bound)


def test_a_missing_artifact_says_how_to_make_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FailedPrecondition, match="rationer train cache"):
        Verifier(tmp_path)


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier()


def test_the_shipped_bound_is_met_on_every_calibration_group(verifier: Verifier) -> None:
    assert tuple(verifier.card["features"]) == FEATURE_NAMES
    assert 0.0 < verifier.threshold < NEVER
    assert max(verifier.point.false_hit.values()) <= 0.01
    assert set(verifier.point.false_hit) == {"fow-cache", "msrp", "sick/contradiction", "sick/neutral"}
    stricter = Verifier(max_false_hit_rate=0.0025)
    assert stricter.threshold >= verifier.threshold


@settings(max_examples=60, deadline=None)
@given(
    row=st.lists(st.floats(0, 1), min_size=N_FEATURES, max_size=N_FEATURES),
    cos_up=st.floats(0.0, 0.5),
    flag=st.integers(4, N_FEATURES - 1),
    count=st.integers(1, 3),
)
def test_more_similarity_never_lowers_the_score_and_evidence_never_raises_it(
    verifier: Verifier, row: list[float], cos_up: float, flag: int, count: int
) -> None:
    x = np.array(row, dtype=np.float32)
    x[1:4] = np.round(x[1:4] * 3)  # counts
    x[4:] = np.round(x[4:])  # rule flags
    base = verifier.probabilities(x.reshape(1, -1))[0]
    closer = x.copy()
    closer[0] = min(1.0, x[0] + cos_up)
    assert verifier.probabilities(closer.reshape(1, -1))[0] >= base - 1e-6
    vetoed = x.copy()
    vetoed[flag] = 1.0
    vetoed[1 + count % 3] += count
    assert verifier.probabilities(vetoed.reshape(1, -1))[0] <= base + 1e-6


async def test_the_cache_serves_a_rewording_and_refuses_a_flipped_request(verifier: Verifier) -> None:
    cache = SemanticCache(MicroBatcher(shared_embedder().embed), verifier=verifier)
    await cache.start()
    try:
        await cache.store(StoreCommand("t", "How do I turn on two-factor authentication?", "Settings > Security"))
        same = await cache.lookup(LookupQuery("t", "How can I turn on two-factor authentication?"))
        assert same.hit and same.match_kind == "semantic"
        flipped = await cache.lookup(LookupQuery("t", "How do I turn off two-factor authentication?"))
        assert not flipped.hit and flipped.guard_rejection == "polarity" and flipped.similarity > 0.8
        other = await cache.lookup(LookupQuery("t", "How do I set up two-factor authentication for my team?"))
        assert not other.hit and other.guard_rejection == "verifier"  # no rule fired; the score was too low
        assert (await cache.lookup(LookupQuery("t", "how do I turn ON two-factor authentication"))).hit  # exact
    finally:
        cache.close(save=False)


async def test_an_explicit_threshold_of_one_turns_semantic_hits_off() -> None:
    off = Verifier(threshold=1.0)
    cache = SemanticCache(MicroBatcher(shared_embedder().embed), verifier=off)
    await cache.start()
    try:
        await cache.store(StoreCommand("t", "How do I turn on two-factor authentication?", "Settings > Security"))
        assert not (await cache.lookup(LookupQuery("t", "How can I turn on two-factor authentication?"))).hit
        assert (await cache.lookup(LookupQuery("t", "How do I turn on two-factor authentication"))).hit  # exact
    finally:
        cache.close(save=False)


@pytest.mark.parametrize(
    ("cached", "new", "match"),
    [
        ("How do I reset my password?", "how can i reset my pasword", True),  # function words, a typo
        ("Where is the nearest store?", "Where's the nearest shop", True),  # a synonym
        ("How do I reset my password?", "How do I reset my colleague's password?", False),  # a word added
        ("A man is chasing a dog", "A dog is chasing a man", False),  # the same words, swapped
        ("A boy is jumping off a wall", "A boy is jumping onto a wall", False),  # another preposition
        ("The girl is not singing and not dancing", "The girl is singing and dancing", False),  # two negations
        ("Is the pool open on Monday?", "Is the pool open on Tuesday?", False),  # a hard rule
    ],
)
def test_a_lexical_match_differs_only_in_function_words_inflection_synonyms_or_typos(
    cached: str, new: str, match: bool
) -> None:
    assert pair_features(cached, new, 0.9)[2] is match


async def test_a_lexical_match_is_served_above_the_floor_but_not_when_semantic_hits_are_off(
    verifier: Verifier,
) -> None:
    assert verifier.lexical  # the shipped card was calibrated with lexical matches
    score, _ = verifier.score("How do I reset my password?", "how can i reset my pasword", 0.6)
    assert score == LEXICAL_SCORE and verifier.accepts(score)
    assert not Verifier(threshold=NEVER).accepts(score)
