"""The false-hit guard: a cheap lexical check run on candidates above the
similarity threshold.

Embedding similarity cannot tell "turn on" from "turn off" (both score ~0.95),
so a candidate is served only if the two texts also agree on everything a
small edit could change:

1. numbers (digits, number words, "two-bed") are the same multiset;
2. negation parity is the same (``not``, ``n't``, ``never``, ``without``...);
3. no polarity family is split across the texts (on/off, increase/bring down,
   allowed/prohibited, benefits/downsides; un-/dis-/non- prefixes);
4. calendar words (days, months, today/tomorrow...) are the same set;
5. named entities (capitalised words not starting a sentence, acronyms,
   ``HubSpot``) appear on both sides, and in the same direction ("from A to B"
   vs "from B to A");
6. the *edit* rule: when the texts share most of their content words, a
   content word left unmatched on either side (after typo tolerance, light
   stemming and a small synonym table) is a substitution or an added
   qualifier ("my password" -> "my colleague's password"), so the pair is
   refused.

A pair that passes but still has unmatched content words is a *rewording*:
the guard could not verify it word by word, so :class:`Verdict.reworded` tells
the cache to demand a higher similarity for it. Every rule fails safe: a
refusal is a cache miss, never a wrong answer. Pure functions; no I/O.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from services.cache.guard_text import Features, features, same_word, stem

# The edit rule applies when this share of the shorter side's distinct content
# words is matched on the other side...
_EDIT_OVERLAP = 0.5
# ...and at most this many distinct words differ on either side (a bigger
# difference is a rewording, judged by the stricter similarity threshold).
_EDIT_MAX_WORDS = 2
# The template rule: texts that share at least this many content words and
# still differ in at least _PAYLOAD_MIN words on *each* side are one template
# with two payloads ("turn this list into bullets: name, email, phone" vs
# "...: apples, pears, plums"; two different multiple-choice scenarios).
_TEMPLATE_SHARED = 3
_PAYLOAD_MIN = 2
_DIRECTIONAL = frozenset({"from", "to", "into", "than", "vs", "versus"})


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""  # empty when ok, else the rule that refused (e.g. "number")
    reworded: bool = False  # passed, but with content words the guard could not match


def _unmatched(left: tuple[str, ...], right: frozenset[str] | tuple[str, ...], strict: bool = False) -> list[str]:
    # The membership test first: most words match exactly, and the pairwise
    # same_word scan is the guard's only cost that grows with text length.
    return [w for w in left if w not in right and not any(same_word(w, v, strict) for v in right)]


def _prefix_flip(left: tuple[str, ...], right: tuple[str, ...]) -> bool:
    """ "safe" on one side, "unsafe" on the other."""
    rstems = {stem(r) for r in right}
    for w in left:
        for prefix in ("un", "non", "dis", "in", "im", "il", "ir", "de", "anti"):
            if w.startswith(prefix) and len(w) - len(prefix) >= 3:
                base = w[len(prefix) :].lstrip("-")
                if base not in left and stem(base) in rstems:
                    return True
    return False


def _polarity_split(fa: Features, fb: Features) -> bool:
    """A polar word only one text uses ("enable") against one only the other
    uses ("disable") from another alternative of the same family. Words both
    texts share ("on" in "disable notifications on the app") are ignored."""
    only_a = [sides for w, sides in fa.polar.items() if w not in fb.polar]
    only_b = [sides for w, sides in fb.polar.items() if w not in fa.polar]
    alts_a = {fam_alt for sides in only_a for fam_alt in sides}
    alts_b = {fam_alt for sides in only_b for fam_alt in sides}
    return any((fam, alt) not in alts_b and any(f == fam and a != alt for f, a in alts_b) for fam, alt in alts_a)


def _entities_match(fa: Features, fb: Features) -> bool:
    # Entities are found by case but matched case-insensitively against every
    # word of the other side, so "Apple Pay" still matches "APPLE PAY".
    return not _unmatched(fa.entities, fb.all_words, strict=True) and not _unmatched(
        fb.entities, fa.all_words, strict=True
    )


def _order_of(entities: tuple[str, ...], other: tuple[str, ...]) -> list[int]:
    out: list[int] = []
    for e in entities:
        idx = next((i for i, v in enumerate(other) if same_word(e, v)), None)
        if idx is not None and idx not in out:
            out.append(idx)
    return out


def _direction_swapped(fa: Features, fb: Features) -> bool:
    """ "from my savings to my current account" vs the reverse."""
    (a_from, a_to), (b_from, b_to) = fa.slots, fb.slots
    if (a_from & b_to and not a_from & b_from) or (a_to & b_from and not a_to & b_to):
        return True
    # "convert miles to km" vs "convert km to miles": each side's target is
    # a word the other side converts from.
    if a_to and b_to and not a_to & b_to and a_to <= fb.all_words and b_to <= fa.all_words:
        return True
    if fa.all_words & _DIRECTIONAL or fb.all_words & _DIRECTIONAL:
        order = _order_of(fb.entities, fa.entities)
        if any(later < earlier for earlier, later in itertools.pairwise(order)):
            return True
    return False


def check(cached: str, new: str) -> Verdict:
    """May the answer cached for ``cached`` be served for ``new``?"""
    fa, fb = features(cached), features(new)
    if fa.numbers != fb.numbers:
        return Verdict(False, "number")
    if fa.negations % 2 != fb.negations % 2:
        return Verdict(False, "negation")
    if _polarity_split(fa, fb) or _prefix_flip(fa.words, fb.words) or _prefix_flip(fb.words, fa.words):
        return Verdict(False, "polarity")
    if not _same_set(fa.calendar, fb.calendar):
        return Verdict(False, "date")
    if not _entities_match(fa, fb):
        return Verdict(False, "entity")
    if _direction_swapped(fa, fb):
        return Verdict(False, "order")
    # Content words are matched against every word of the other side, so a
    # synonym that happens to be a stopword ("request" / "get") still counts.
    only_a = set(_unmatched(fa.words, fb.all_words))
    only_b = set(_unmatched(fb.words, fa.all_words))
    distinct_a, distinct_b = set(fa.words), set(fb.words)
    shorter = min(len(distinct_a), len(distinct_b)) or 1
    near_identical = (len(distinct_a) - len(only_a)) / shorter >= _EDIT_OVERLAP
    if (only_a or only_b) and near_identical and max(len(only_a), len(only_b)) <= _EDIT_MAX_WORDS:
        return Verdict(False, "edit")
    shared = len(distinct_a) - len(only_a)
    if shared >= _TEMPLATE_SHARED and min(len(only_a), len(only_b)) >= _PAYLOAD_MIN:
        return Verdict(False, "template")
    return Verdict(True, reworded=bool(only_a or only_b))


def _same_set(a: frozenset[str], b: frozenset[str]) -> bool:
    return not _unmatched(tuple(a), b) and not _unmatched(tuple(b), a)
