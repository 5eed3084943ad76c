"""The false-hit guard on hand-written pairs (not from fow-cache)."""

from __future__ import annotations

import pytest

from services.cache import guard
from services.cache.guard_text import features, same_word

TRAPS = [
    ("How do I enable notifications on the app?", "How do I disable notifications on the app?", "polarity"),
    ("Switch the heating on", "Switch the heating off", "polarity"),
    ("Is parking allowed on my street?", "Is parking prohibited on my street?", "polarity"),
    ("Can I bring my dog?", "Can't I bring my dog?", "negation"),
    ("Is the museum accessible?", "Is the museum inaccessible?", "polarity"),
    ("Book a table for 4 people", "Book a table for 6 people", "number"),
    ("Book a table for four people", "Book a table for six people", "number"),
    ("What was the score in 1998?", "What was the score in 1999?", "number"),
    ("Is the pool open on Tuesday?", "Is the pool open on Thursday?", "date"),
    ("How do I migrate from Jira to Linear?", "How do I migrate from Linear to Jira?", "order"),
    ("Convert 5 miles to km", "Convert 5 km to miles", "order"),
    ("convert celsius to fahrenheit", "convert fahrenheit to celsius", "order"),
    ("convert a string to an integer in python", "convert an integer to a string in python", "order"),
    ("What is the population of Slovenia?", "What is the population of Slovakia?", "entity"),
    ("How do I delete a photo?", "How do I delete my album?", "edit"),
    ("How do I rename a folder?", "How do I rename a shared folder?", "edit"),
    # One template, two payloads: the shared frame is not the question.
    ("Turn this list into a bulleted list: name, email, phone",
     "Turn this list into a bulleted list: apples, pears, plums", "template"),
    ("Rewrite more formally: can we push the office move to Thursday?",
     "Rewrite more formally: can we push the quarterly budget review to Thursday?", "template"),
    ("Which scenario is morally wrong? Scenario 1: I returned the wallet I found. Scenario 2: I lied to my boss.",
     "Which scenario is morally wrong? Scenario 1: I kept the change by mistake. Scenario 2: I painted the fence.",
     "template"),
]  # fmt: skip

SAME = [
    ("How do I reset my password?", "how do i reset my password"),
    ("How do I reset my password?", "How do I reset my pasword?"),
    ("How do I update my billing address?", "How can I change my billing address?"),
    ("Hi team, how do I cancel my order?", "How do I cancel my order? Many thanks"),
    ("What are your opening times on Sundays?", "What are your opening times on Sunday?"),
    ("WHERE IS THE NEAREST STATION TO Paddington?", "Where is the nearest station to Paddington?"),
    ("Write a short email to Lena about the security training.",
     "Compose a brief email to Lena regarding the security training."),
]  # fmt: skip


@pytest.mark.parametrize(("cached", "new", "reason"), TRAPS)
def test_traps_are_refused_with_the_rule_that_caught_them(cached: str, new: str, reason: str) -> None:
    verdict = guard.check(cached, new)
    assert not verdict.ok
    assert verdict.reason == reason


@pytest.mark.parametrize(("cached", "new"), SAME)
def test_equivalent_questions_pass_and_are_verified_word_by_word(cached: str, new: str) -> None:
    verdict = guard.check(cached, new)
    assert verdict.ok, verdict
    assert not verdict.reworded


def test_a_broad_rewording_passes_but_is_flagged_as_reworded() -> None:
    verdict = guard.check(
        "How do I reset my password?", "I forgot the password for my account and cannot log in, what now?"
    )
    # "cannot" adds a negation, so this is refused; without it the pair is a rewording.
    assert not verdict.ok
    verdict = guard.check(
        "How do I reset my password?", "I forgot the password for my account, what steps should I take?"
    )
    assert verdict.ok and verdict.reworded


def test_features_extract_numbers_units_and_contractions() -> None:
    f = features("Transfer £1,500 to my 2-year fixed saver, don't wait until the 3rd")
    assert f.numbers == {"1500": 1, "2": 1, "3": 1}
    assert f.negations == 1
    assert "saver" in f.words


def test_same_word_tolerates_typos_but_never_numbers_or_opposites() -> None:
    assert same_word("adress", "address")
    assert same_word("sunday", "sundays")
    assert not same_word("2014", "2018")
    assert not same_word("lock", "unlock")
    assert not same_word("mary", "mark")  # short words: exact only
