from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from rationer.replay.office import paraphrase
from rationer.replay.synth import SynthConfig, arrival_times, load_pools, synthesize


@pytest.fixture(scope="module")
def pools():  # type: ignore[no-untyped-def]
    return load_pools(None)


def test_same_seed_same_trace_other_seed_other_trace(pools) -> None:  # type: ignore[no-untyped-def]
    a = synthesize(SynthConfig(requests=120, seed=3), pools)
    b = synthesize(SynthConfig(requests=120, seed=3), pools)
    c = synthesize(SynthConfig(requests=120, seed=4), pools)
    assert a == b
    assert [ln.messages for ln in a[1]] != [ln.messages for ln in c[1]]


def test_prompts_come_from_the_held_out_split(pools) -> None:  # type: ignore[no-untyped-def]
    from rationer.classifier.artifact import load_card

    test_subjects = set(load_card()["split"]["mmlu_test_subjects"])
    mmlu, gsm, chat = pools
    assert {p.group.split(":")[1] for p in mmlu} <= test_subjects
    assert len(gsm) > 100 and all(p.kind == "gsm8k" for p in gsm)
    assert len(chat) > 700 and all(p.kind == "chat" for p in chat)


def test_no_trace_prompt_is_a_training_or_validation_row(pools) -> None:  # type: ignore[no-untyped-def]
    from rationer.classifier.artifact import load_card
    from rationer.classifier.data import resolve_data_dir
    from rationer.classifier.sources import load_all
    from rationer.classifier.split2 import GroupSplit

    frame = load_all(resolve_data_dir(None))
    part = GroupSplit.from_dict(load_card()["split"]).assign(frame)
    seen = set(frame.loc[part.isin(["train", "val"]).to_numpy(), "prompt"])
    for pool in pools:
        # GSM8K prompts carry an added instruction line; compare the row text.
        assert not {p.content.removesuffix("\nGive the final number.") for p in pool} & seen


def test_chat_labels_follow_the_judge(pools) -> None:  # type: ignore[no-untyped-def]
    chat = pools[2]
    # The judge preferred the strong answer on most prompts; ties count good for both.
    assert 0.6 < sum(p.strong_ok for p in chat) / len(chat) < 0.9
    assert 0.1 < sum(p.weak_ok for p in chat) / len(chat) < 0.4
    assert all(p.weak_ok or p.strong_ok for p in chat)
    _, lines = synthesize(SynthConfig(requests=300, seed=7), pools)
    assert sum(ln.labels["kind"] == "chat" for ln in lines) > 20


def test_mix_repeats_and_labels(pools) -> None:  # type: ignore[no-untyped-def]
    cfg = SynthConfig(requests=400, seed=11, repeat_rate=0.4, paraphrase_share=0.5)
    header, lines = synthesize(cfg, pools)
    variants = Counter(ln.labels["variant"] for ln in lines)
    assert 0.3 < (variants["exact"] + variants["paraphrase"]) / len(lines) < 0.5
    assert variants["exact"] > 0 and variants["paraphrase"] > 0
    by_group = defaultdict(list)
    for ln in lines:
        by_group[ln.group].append(ln)
        assert ln.max_tokens == cfg.max_tokens and ln.org == "acme"
        if ln.labels["kind"] == "office":
            assert ln.labels["weak_ok"] and ln.labels["strong_ok"]
    for group in by_group.values():
        # Repeats share the labels of their original, which comes first.
        assert len({(ln.labels["weak_ok"], ln.labels["strong_ok"]) for ln in group}) == 1
        assert group[0].labels["variant"] == "original"
        for ln in group[1:]:
            same = ln.messages == group[0].messages
            assert same == (ln.labels["variant"] == "exact")
    # Zipf popularity: the most repeated prompt is asked far more than the median one.
    counts = sorted((len(g) for g in by_group.values()), reverse=True)
    assert counts[0] >= 5 * counts[len(counts) // 2]
    assert {b.team for b in header.budgets} == {ln.team for ln in lines}
    assert all(b.usd > 0 for b in header.budgets)


def test_arrivals_are_diurnal_and_sorted() -> None:
    times = arrival_times(random.Random(1), 2000, 86_400)
    assert times == sorted(times) and times[0] >= 0 and times[-1] < 86_400
    night = sum(1 for t in times if 2 * 3600 <= t < 5 * 3600)
    morning = sum(1 for t in times if 9 * 3600 <= t < 12 * 3600)
    assert morning > 5 * night


def test_paraphrase_changes_wording() -> None:
    rng = random.Random(0)
    for text in ["Write a short email to Dana about the hiring plan.", "What is 2+2?\nAnswer:"]:
        assert paraphrase(text, rng) != text
