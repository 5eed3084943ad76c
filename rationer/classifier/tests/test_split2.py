"""The v2 group split over every data set: whole groups held out, licences respected."""

from __future__ import annotations

import pandas as pd
import pytest

from rationer.classifier.data import resolve_data_dir
from rationer.classifier.sources import EVAL_ONLY, last_shot, load_all, mmlu_pro_prompt
from rationer.classifier.split2 import GroupSplit, make_group_split
from rationer.errors import FailedPrecondition


def _all() -> pd.DataFrame:
    try:
        frame = load_all(resolve_data_dir(None))
    except FailedPrecondition:
        pytest.skip("router data (../shared/data) not present")
    if "mmlu_pro" not in set(frame["dataset"]):
        pytest.skip("routing/ data not present")
    return frame


def test_real_group_split_keeps_every_group_and_question_on_one_side() -> None:
    frame = _all()
    split = make_group_split(frame, seed=7)
    assert GroupSplit.from_dict(split.to_dict()) == split
    part = split.assign(frame)
    assert frame["prompt"].is_unique
    # Evaluation-only data never trains or selects.
    assert set(part[frame["dataset"].isin(EVAL_ONLY)]) == {"test"}
    assert not frame.loc[part.isin(["train", "val"]), "dataset"].isin(EVAL_ONLY).any()
    pro = frame["dataset"] == "mmlu_pro"
    cats = {p: set(frame.loc[pro & (part == p), "subject"]) for p in ("train", "val", "test")}
    assert cats["test"] == set(split.pro_test_categories)
    assert not cats["test"] & cats["train"] and not cats["val"] & cats["train"]
    # An MMLU subject, whether asked in MMLU or rewritten in MMLU-Pro, sits in one part only.
    mmlu = frame["dataset"] == "mmlu"
    subject_of = frame["subject"].where(mmlu, frame["mmlu_subject"])
    keyed = pd.DataFrame({"s": subject_of, "p": part})[
        (mmlu | (pro & (frame["mmlu_subject"] != ""))) & (part != "drop")
    ]
    assert keyed.groupby("s")["p"].nunique().max() == 1


def test_prompt_shapes() -> None:
    assert mmlu_pro_prompt("Q?", ["x", "y"]) == "Q?\nA. x\nB. y\nAnswer:"
    real = "Q2: which of these is the real question here?\nA) b\nAnswer:"
    assert last_shot("Q1\nA) a\nAnswer:\nA\n\n" + real) == real
    assert last_shot("Please answer with the letter.\n\nshort") == "Please answer with the letter.\n\nshort"
