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

Beside the features, :func:`lexical_match` says whether the two texts ask
the same thing *word for word*: the guard verified every content word (no
hard or soft rule fired, nothing reworded), in the same order, with as many
negations and the same prepositions on both sides. Such a pair differs only
in function words, inflection, synonyms or typos ("How do I reset my
password?" / "how can i reset my pasword"), and the verifier serves it
above the similarity floor whatever its score (docs/cache.md, "Lexical
matches"). On the train splits it held 58 fow-cache, 121+10 SICK and 4 MSRP
should-hit pairs and no trap.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import pairwise

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


# Function words that the guard ignores but that change what is asked:
# "jumping off a chair" / "jumping onto a chair", "talking about" / "on the telephone".
_PREPOSITION_LIST = (
    "about above across after against along among around at before behind below beneath beside between beyond by "
    "down during for from in inside into near of off on onto out outside over past since than through to toward "
    "towards under until up upon with within without"
)
PREPOSITIONS = frozenset(_PREPOSITION_LIST.split(" "))
_WORD = re.compile(r"[a-z]+")


def _prepositions(text: str) -> Counter[str]:
    return Counter(w for w in _WORD.findall(text.lower()) if w in PREPOSITIONS)


def _same_order(fa: Features, fb: Features) -> bool:
    """The content words both sides share appear in the same relative order
    ("a man chases a dog" / "a dog chases a man" does not)."""
    pos = []
    for w in fa.words:
        j = next((i for i, v in enumerate(fb.words) if same_word(w, v)), None)
        if j is not None:
            pos.append(j)
    return all(x <= y for x, y in pairwise(pos))


def lexical_match(cached: str, new: str, fa: Features, fb: Features, verdict: guard.Verdict) -> bool:
    """Every content word matched, in order, same negation count and prepositions."""
    return (
        verdict.ok
        and not verdict.reworded
        and fa.negations == fb.negations
        and _same_order(fa, fb)
        and _prepositions(cached) == _prepositions(new)
    )


def _unmatched(left: tuple[str, ...], right: frozenset[str]) -> int:
    return sum(1 for w in set(left) if w not in right and not any(same_word(w, v) for v in right))


def _number_diff(fa: Features, fb: Features) -> int:
    return sum(((fa.numbers - fb.numbers) + (fb.numbers - fa.numbers)).values())


def pair_features(cached: str, new: str, cos: float) -> tuple[npt.NDArray[np.float32], guard.Verdict, bool]:
    """One row of :data:`FEATURE_NAMES` for the pair, the guard's verdict
    (its rule names why a candidate was refused) and :func:`lexical_match`."""
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
    return np.asarray(row, dtype=np.float32), verdict, lexical_match(cached, new, fa, fb, verdict)


def feature_matrix(
    pairs: list[tuple[str, str]], cos: npt.ArrayLike
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """The feature rows and the lexical-match flags of ``pairs``."""
    c = np.asarray(cos, dtype=np.float32).reshape(-1)
    out = np.zeros((len(pairs), N_FEATURES), dtype=np.float32)
    lexical = np.zeros(len(pairs), dtype=bool)
    for i, (a, b) in enumerate(pairs):
        out[i], _, lexical[i] = pair_features(a, b, float(c[i]))
    return out, lexical
