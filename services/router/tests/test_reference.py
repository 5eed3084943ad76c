"""Savings against the configured reference only (issue 18 item 7), against fake ports."""

from __future__ import annotations

from collections.abc import Sequence

from services.router.reference import Reference, reference_tier
from services.router.settings import TierSettings
from services.router.tests.fakes import KEY, Fakes, hit, request
from services.router.types import Message


class WordCounter:
    """An exact tokenizer that counts words (a stand-in for the reference's own vocabulary)."""

    exact = True

    def prompt(self, messages: Sequence[Message]) -> int:
        return sum(len(m.content.split()) for m in messages) + 3

    def text(self, text: str) -> int:
        return len(text.split())


def _tiers(*kinds: str) -> list[TierSettings]:
    return [TierSettings(name=f"t{i}", kind=k, rank=i, model=f"m{i}") for i, k in enumerate(kinds)]  # type: ignore[arg-type]


def test_the_reference_is_the_dearest_frontier_tier_or_the_named_one_or_none() -> None:
    assert reference_tier(_tiers("local", "frontier", "frontier"), "auto") == "t2"
    assert reference_tier(_tiers("local", "local"), "auto") == ""  # no frontier: no savings
    assert reference_tier(_tiers("local", "frontier"), "none") == ""
    assert reference_tier(_tiers("local"), "gpt-4o-ref") == "gpt-4o-ref"


async def test_a_commit_names_the_reference_and_its_tokenizers_counts() -> None:
    fakes = Fakes()
    core = fakes.core(reference=Reference("big", WordCounter()))
    await core.complete(KEY, request("one two three four"), request_id="r1")
    (commit,) = fakes.ledger.commits
    assert (commit.tier, commit.prompt_tokens, commit.completion_tokens) == ("small", 5, 2)
    # The prompt on the reference's tokenizer (4 words + 3), the answer's real length ("an answer").
    assert (commit.reference_tier, commit.reference_prompt_tokens, commit.reference_completion_tokens) == ("big", 7, 2)


async def test_without_an_exact_tokenizer_the_served_counts_are_used() -> None:
    fakes = Fakes()
    await fakes.core(reference=Reference("big")).complete(KEY, request())
    (commit,) = fakes.ledger.commits
    assert (commit.reference_tier, commit.reference_prompt_tokens, commit.reference_completion_tokens) == ("big", 5, 2)


async def test_an_answer_from_the_reference_itself_keeps_its_own_counts() -> None:
    fakes = Fakes()
    fakes.scorer.value = 0.9
    await fakes.core(reference=Reference("big", WordCounter())).complete(KEY, request("a b c d e f"))
    (commit,) = fakes.ledger.commits
    assert commit.tier == "big" and (commit.reference_prompt_tokens, commit.reference_completion_tokens) == (5, 2)


async def test_no_reference_claims_no_savings_on_hits_or_commits() -> None:
    fakes = Fakes()
    fakes.cache.hit = hit()
    core = fakes.core(reference=Reference(""))
    core.billing._prices.reference_input_per_million = core.billing._prices.reference_output_per_million = 0
    _, res = await core.complete(KEY, request(), request_id="r1")
    assert res.cache_hit and res.savings_nano_usd == 0
    (record,) = fakes.ledger.hits
    assert record.reference_tier == ""


async def test_a_hit_is_counted_on_the_reference_tokenizer() -> None:
    fakes = Fakes()
    fakes.cache.hit = hit("three word answer")  # hit tier "big" is the reference: its own counts (4, 3)
    _, res = await fakes.core(reference=Reference("small", WordCounter())).complete(KEY, request("x y"))
    (record,) = fakes.ledger.hits
    assert (record.reference_tier, record.reference_prompt_tokens, record.reference_completion_tokens) == (
        "small", 5, 3)  # fmt: skip
    assert res.savings_nano_usd == 5 * 1 + 3 * 2  # the price book's reference price on those counts
