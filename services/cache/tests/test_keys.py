from __future__ import annotations

from typing import Any

from services.cache import keys
from services.cache.types import CacheContext


def test_canonical_text_covers_every_turn_newest_first_and_drops_system() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "I use  the Pro plan."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": [{"type": "text", "text": "How do I cancel?"}]},
    ]
    text = keys.canonical_text(messages)
    assert text.splitlines() == ["user: How do I cancel?", "assistant: Noted.", "user: I use the Pro plan."]
    assert keys.system_prompt(messages) == "You are terse."
    assert "system: You are terse." in keys.canonical_text(messages, include_system=True)


def test_a_single_user_turn_is_its_plain_text() -> None:
    # The classifier scores the router's one embedding; it was trained on bare prompts.
    single = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " What is  2+2? "}]
    assert keys.canonical_text(single) == "What is 2+2?"
    assert keys.canonical_text([{"role": "assistant", "content": "Hi"}]) == "assistant: Hi"


def test_different_history_gives_a_different_key_even_with_the_same_last_message() -> None:
    a = [{"role": "user", "content": "I'm on the Basic plan"}, {"role": "user", "content": "How do I upgrade?"}]
    b = [{"role": "user", "content": "I'm on the Pro plan"}, {"role": "user", "content": "How do I upgrade?"}]
    assert keys.exact_key("", keys.canonical_text(a)) != keys.exact_key("", keys.canonical_text(b))


def test_normalize_ignores_case_whitespace_and_edge_punctuation() -> None:
    assert keys.normalize("  What is  X? ") == keys.normalize("what is x")
    assert keys.normalize("What is X?") != keys.normalize("What is Y?")


def test_context_key_changes_with_every_answer_changing_field() -> None:
    base = CacheContext("local", "Be brief.", 256, keys.params_digest({"stop": ["\n"]}))
    variants = [
        CacheContext("frontier", "Be brief.", 256, base.params_digest),
        CacheContext("local", "Be verbose.", 256, base.params_digest),
        CacheContext("local", "Be brief.", 512, base.params_digest),
        CacheContext("local", "Be brief.", 256, keys.params_digest({"stop": ["."]})),
    ]
    assert len({base.key, *(v.key for v in variants)}) == 5
    assert keys.params_digest({"a": 1, "b": 2}) == keys.params_digest({"b": 2, "a": 1})


def test_is_cacheable_policy() -> None:
    assert keys.is_cacheable(0.0)
    assert keys.is_cacheable(None)
    assert not keys.is_cacheable(0.7)
    assert keys.is_cacheable(0.7, allow_sampled=True)
    assert not keys.is_cacheable(0.0, n=3)
