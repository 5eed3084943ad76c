"""The held-out split: whole subjects, no overlap, reproducible; metric code vs published numbers."""

from __future__ import annotations

import pandas as pd
import pytest

from rationer.classifier import metrics
from rationer.classifier.data import Split, load_frame, make_split, resolve_data_dir
from rationer.errors import FailedPrecondition


def _real_frame() -> pd.DataFrame:
    try:
        return load_frame(resolve_data_dir(None))
    except FailedPrecondition:
        pytest.skip("router data (../shared/data) not present")


def test_make_split_is_disjoint_and_seeded() -> None:
    subjects = [f"s{i}" for i in range(30)]
    a, b = make_split(subjects, seed=3), make_split(subjects, seed=3)
    assert a == b
    assert not set(a.test_subjects) & set(a.val_subjects)
    assert len(a.test_subjects) == 12 and len(a.val_subjects) == 8
    assert make_split(subjects, seed=4).test_subjects != a.test_subjects
    assert Split.from_dict(a.to_dict()) == a


def test_make_split_needs_enough_subjects() -> None:
    with pytest.raises(FailedPrecondition):
        make_split(["a", "b"], seed=1)


def test_explicit_missing_data_dir_is_an_actionable_error(tmp_path: object) -> None:
    with pytest.raises(FailedPrecondition, match="--data-dir"):
        resolve_data_dir(tmp_path)  # type: ignore[arg-type]


def test_real_split_holds_out_whole_subjects() -> None:
    frame = _real_frame()
    subjects = sorted(frame.loc[frame["dataset"] == "mmlu", "subject"].unique())
    split = make_split(subjects, seed=7)
    part = split.assign(frame)
    mmlu = frame["dataset"] == "mmlu"
    by_part = {p: set(frame.loc[mmlu & (part == p), "subject"]) for p in ("train", "val", "test")}
    assert by_part["test"] == set(split.test_subjects)
    assert not by_part["test"] & by_part["train"]
    assert not by_part["test"] & by_part["val"]
    assert not by_part["val"] & by_part["train"]
    # Deduplicated and cleaned: no prompt sits in two parts.
    assert frame["prompt"].is_unique
    gsm = frame["dataset"] == "gsm8k"
    assert (part[gsm] == "test").mean() == pytest.approx(0.3, abs=0.01)


def test_metric_code_reproduces_published_reference_numbers() -> None:
    # The issue quotes, on the full data: MMLU random 67.8% / oracle 8.5% strong calls
    # for 95% of GPT-4 quality, GSM8K random 80.4% / oracle 17.6%. Cleaning removes
    # 0.8% of rows, so allow a few tenths of a point.
    frame = _real_frame()
    expected = {"mmlu": (0.678, 0.085), "gsm8k": (0.804, 0.176)}
    for ds, (rand, oracle) in expected.items():
        sub = frame[frame["dataset"] == ds]
        rnd = metrics.routing_curve(metrics.random_scores(len(sub)), sub["weak"], sub["strong"])
        orc = metrics.routing_curve(metrics.oracle_scores(sub["weak"], sub["strong"]), sub["weak"], sub["strong"])
        assert metrics.share_for_quality(rnd) == pytest.approx(rand, abs=0.006)
        assert metrics.share_for_quality(orc) == pytest.approx(oracle, abs=0.006)
