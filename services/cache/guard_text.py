"""Text features for the false-hit guard: tokens, numbers, negations,
polarity, calendar words, entities and direction slots.

Plain string processing (no models), cached per text because the same cached
entry is compared against many lookups.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from services.cache import lexicon

_TOKEN = re.compile(
    r"[£$€]?\d(?:[\d,.:/]*\d)?(?:%|[a-zA-Z]+)?"  # numbers with units: £300,000, 3pm, 10GB, 9:15, 2025/26
    r"|[A-Za-z][A-Za-z0-9]*(?:[-'’][A-Za-z0-9]+)*"  # words, incl. check-in, don't, P60
)
_NUMBER_UNIT = re.compile(r"[£$€]?([\d,.:/]+)(.*)")
# Clause boundaries: entity detection skips the first word of each, and a
# clause made only of greetings ("Hi team,", "Many thanks.") is dropped.
_CLAUSE_END = re.compile(r"[.!?:;,](?=\s|$)|\n")  # not inside 9.99, 9:15 or 1,500
_ORDINAL_SUFFIXES = ("st", "nd", "rd", "th")
_SLOT_FROM = frozenset({"from"})
_SLOT_TO = frozenset({"to", "into"})


@dataclass(frozen=True)
class Features:
    words: tuple[str, ...]  # normalised content words in order (stopwords removed)
    all_words: frozenset[str]  # every lower-cased word incl. stopwords
    numbers: Counter[str]
    negations: int
    polar: dict[str, frozenset[tuple[int, int]]]  # stem of a polar word -> its (family, alternative)s
    calendar: frozenset[str]
    entities: tuple[str, ...]  # lower-cased, in order of first appearance
    slots: tuple[frozenset[str], frozenset[str]]  # content words right after "from"; after "to"/"into"


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Light stemming (plurals, -ing/-ed/-est, final e): enough for "Sundays" /
    "Sunday" and "submitting" / "submit"; the same word always gets the same stem."""
    if word.endswith(("sses", "xes", "zes", "ches", "shes")) and len(word) > 5:
        return word[:-2]
    for suffix in ("ies", "ing", "est", "ed", "es", "s", "e"):
        base = word[: len(word) - len(suffix)]
        if word.endswith(suffix) and len(base) >= 3 and not word.endswith("ss"):
            if suffix == "ies":
                return base + "y"
            if len(base) >= 4 and base[-1] == base[-2] and base[-1] not in "aeiousl":
                base = base[:-1]  # submitt -> submit, shipp -> ship
            return base
    return word


def _polarity_index() -> dict[str, list[tuple[int, int]]]:
    index: dict[str, list[tuple[int, int]]] = {}
    for fam, sides in enumerate(lexicon.POLARITY):
        for sign, words in enumerate(sides):
            for w in words:
                for key in {w, stem(w)}:
                    index.setdefault(key, []).append((fam, sign))
    return index


_POLARITY_INDEX = _polarity_index()
_SYNONYM_GROUPS: dict[str, frozenset[int]] = {}
for _gid, _group in enumerate(lexicon.SYNONYM_GROUPS):
    for _w in _group:
        _SYNONYM_GROUPS[stem(_w)] = _SYNONYM_GROUPS.get(stem(_w), frozenset()) | {_gid}


def _expand(word: str) -> list[str]:
    """Split contractions so that "don't" counts as a negation."""
    w = word.lower().replace("’", "'")
    if w in ("can't", "cannot"):
        return ["can", "not"]
    if w == "won't":
        return ["will", "not"]
    if w.endswith("n't"):
        return [w[:-3], "not"]
    if "'" in w:
        head, _, tail = w.partition("'")
        return [head] if tail in ("s", "d", "m", "ve", "re", "ll") else [head + tail]
    return [w]


def _split_compound(words: list[str]) -> list[str]:
    """ "end-of-tenancy" -> end, of, tenancy, so "end of tenancy" matches; a
    compound with its own polarity ("check-in", "part-time") stays whole."""
    out: list[str] = []
    for w in words:
        if "-" in w and w not in _POLARITY_INDEX:
            out.extend(p for p in w.split("-") if p)
        else:
            out.append(w)
    return out


def _number(token: str) -> tuple[str, str] | None:
    """(value, unit) of a numeric token: "£300,000" -> ("300000", ""), "10GB" -> ("10", "gb")."""
    match = _NUMBER_UNIT.fullmatch(token)
    if match:
        unit = match.group(2).lower()
        unit = "" if unit in _ORDINAL_SUFFIXES else "percent" if unit == "%" else unit
        return match.group(1).replace(",", "").rstrip("."), unit
    lowered = token.lower()
    value = lexicon.NUMBER_WORDS.get(lowered)
    if value is None and "-" in lowered:  # "two-bed", "one-bedroom"
        head = lowered.split("-", 1)[0]
        value = "1" if head == "one" else lexicon.NUMBER_WORDS.get(head)
    return (value, "") if value is not None else None


def _calendar(word: str, capitalised: bool) -> str | None:
    """The calendar word ``word`` spells, tolerating a plural or a typo ("Mondys")."""
    s = stem(word)
    if s in lexicon.CALENDAR or (capitalised and s in ("may", "march")):
        return s
    if len(s) >= 5:
        for day in lexicon.CALENDAR:
            if day[0] == s[0] and edit_distance_le(s, day, 1):
                return day
    return None


def _is_entity(token: str, clause_start: bool) -> bool:
    if not token[0].isalpha() or token.split("'")[0] == "I" or token.lower() in lexicon.STOPWORDS:
        return False
    inner_caps = any(c.isupper() for c in token[1:])
    return inner_caps or (token[0].isupper() and not clause_start)


class _Builder:
    def __init__(self) -> None:
        self.words: list[str] = []
        self.all_words: set[str] = set()
        self.numbers: Counter[str] = Counter()
        self.negations = 0
        self.polar: dict[str, frozenset[tuple[int, int]]] = {}
        self.calendar: set[str] = set()
        self.entities: list[str] = []
        self.slot_from: set[str] = set()
        self.slot_to: set[str] = set()

    def add_clause(self, tokens: list[str]) -> None:
        pending: str | None = None  # "from" / "to" waiting for its content word
        for i, token in enumerate(tokens):
            self.all_words.add(token.lower())
            num = _number(token)
            if num is not None:
                self.numbers[num[0]] += 1
                if num[1]:
                    self.words.append(num[1])  # the unit is a word: 10GB vs 10MB differ
                continue
            if _is_entity(token, clause_start=i == 0) and token.lower() not in self.entities:
                self.entities.append(token.lower())
            for w in _split_compound(_expand(token)):
                pending = self._add_word(w, token[0].isupper(), pending)

    def _add_word(self, w: str, capitalised: bool, pending: str | None) -> str | None:
        self.all_words.add(w)
        if w in lexicon.NEGATORS:
            self.negations += 1
            return pending
        sides = _POLARITY_INDEX.get(w) or _POLARITY_INDEX.get(stem(w))
        if sides:
            self.polar[stem(w)] = frozenset(sides)
        day = _calendar(w, capitalised)
        if day:
            self.calendar.add(day)
        if w in _SLOT_FROM or w in _SLOT_TO:
            return w
        if w in lexicon.STOPWORDS or w in lexicon.PARTICLES:
            return pending  # particles (on/off, up/down) count through the polarity check
        self.words.append(w)
        if pending in _SLOT_FROM:
            self.slot_from.add(w)
        elif pending in _SLOT_TO:
            self.slot_to.add(w)
        return None

    def build(self) -> Features:
        return Features(
            words=tuple(self.words),
            all_words=frozenset(self.all_words),
            numbers=self.numbers,
            negations=self.negations,
            polar=dict(self.polar),
            calendar=frozenset(self.calendar),
            entities=tuple(self.entities),
            slots=(frozenset(self.slot_from), frozenset(self.slot_to)),
        )


@lru_cache(maxsize=8192)
def features(text: str) -> Features:
    builder = _Builder()
    for clause in _CLAUSE_END.split(text):
        tokens = [m.group(0) for m in _TOKEN.finditer(clause)]
        if all(t.lower() in lexicon.GREETINGS or t.lower() in lexicon.STOPWORDS for t in tokens):
            continue  # "Hi team!", "Morning!", "Many thanks": not part of the question
        builder.add_clause(tokens)
    return builder.build()


def edit_distance_le(a: str, b: str, limit: int) -> bool:
    """Damerau-Levenshtein distance <= limit (small limits; early exit)."""
    if abs(len(a) - len(b)) > limit:
        return False
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return False
        prev2, prev = prev, cur
    return prev[-1] <= limit


def opposite(a: str, b: str) -> bool:
    """Are ``a`` and ``b`` on opposite sides of one polarity family?"""
    sides_a = set(_POLARITY_INDEX.get(a) or _POLARITY_INDEX.get(stem(a), []))
    sides_b = set(_POLARITY_INDEX.get(b) or _POLARITY_INDEX.get(stem(b), []))
    return any(fam == fb and sa != sb for fam, sa in sides_a for fb, sb in sides_b)


@lru_cache(maxsize=65536)
def same_word(a: str, b: str, strict: bool = False) -> bool:
    """Equal up to a plural/verb ending, a typo, or a listed synonym.
    ``strict`` (names): one typo at most, and only in words of 6+ letters."""
    if a == b:
        return True
    sa, sb = stem(a), stem(b)
    if sa == sb or _SYNONYM_GROUPS.get(sa, frozenset()) & _SYNONYM_GROUPS.get(sb, frozenset()):
        return True
    if any(c.isdigit() for c in a + b) or opposite(a, b):
        return False  # never "correct" 2014 into 2018, or "lock" into "unlock"
    shorter, longer = sorted((len(a), len(b)))
    if strict:
        limit = 1 if shorter >= 6 else 0
    else:
        limit = 2 if shorter >= 8 else 1 if shorter >= 5 or (shorter == 4 and longer == 5) else 0
    return limit > 0 and a[0] == b[0] and edit_distance_le(a, b, limit)
