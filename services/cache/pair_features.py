"""Pair features for the verifier: "may the answer cached for ``cached`` be
served for ``new``?", given their embedding cosine.

The cosine proposes; lexical evidence that the two texts differ in what
they ask vetoes. Only evidence that means "different" in any text is kept:
the guard's hard rules (numbers, negation, polarity, dates, names,
direction) and three counts (differing numbers, negations, names). The
guard's soft rules (edit, template, rewording) and word-overlap scores were
measured as features too and dropped: they carry on fow-cache's questions
but point the wrong way on MSRP and SICK, e.g. an "edit" there is more often
a paraphrase than a trap (docs/cache.md, "Choosing the verifier").
Pure Python + numpy; about the cost of the guard itself.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from services.cache import guard
from services.cache.guard_text import Features, features, same_word

HARD_RULES = ("number", "negation", "polarity", "date", "entity", "order")
FEATURE_NAMES = (
    "cos",
    "number_diff",
    "negation_diff",
    "entity_unmatched",
    *(f"guard_{r}" for r in HARD_RULES),
)
N_FEATURES = len(FEATURE_NAMES)


def _unmatched(left: tuple[str, ...], right: frozenset[str]) -> int:
    return sum(1 for w in set(left) if w not in right and not any(same_word(w, v) for v in right))


def _number_diff(fa: Features, fb: Features) -> int:
    return sum(((fa.numbers - fb.numbers) + (fb.numbers - fa.numbers)).values())


def pair_features(cached: str, new: str, cos: float) -> tuple[npt.NDArray[np.float32], guard.Verdict]:
    """One row of :data:`FEATURE_NAMES` for the pair, and the guard's verdict
    (its rule names why a candidate was refused)."""
    fa, fb = features(cached), features(new)
    verdict = guard.check(cached, new)
    entity_un = _unmatched(fa.entities, fb.all_words) + _unmatched(fb.entities, fa.all_words)
    row = [
        cos,
        float(min(_number_diff(fa, fb), 4)),
        float(min(abs(fa.negations - fb.negations), 3)),
        float(min(entity_un, 4)),
        *(float(verdict.reason == r) for r in HARD_RULES),
    ]
    return np.asarray(row, dtype=np.float32), verdict


def feature_matrix(pairs: list[tuple[str, str]], cos: npt.ArrayLike) -> npt.NDArray[np.float32]:
    c = np.asarray(cos, dtype=np.float32).reshape(-1)
    out = np.zeros((len(pairs), N_FEATURES), dtype=np.float32)
    for i, (a, b) in enumerate(pairs):
        out[i] = pair_features(a, b, float(c[i]))[0]
    return out
