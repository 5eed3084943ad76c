"""Generalisation split over every router data set (artifact v2).

Whole groups are held out, never random rows, wherever the data has groups:

* MMLU: 12 subjects test, 8 validation (the v1 split, same seed);
* MMLU-Pro: whole categories (3 test, 2 validation); its rewritten MMLU
  questions (``mmlu_subject``) must also agree with their MMLU subject's
  side, and a row whose category and subject disagree is dropped, so no
  question crosses parts in either form;
* GSM8K: one topic, so a seeded 30% test / 15% validation;
* evaluation-only data (AlpacaEval, RouterBench; licences) is all ``test``.

Parts: ``train``, ``val``, ``test``, ``drop``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rationer.classifier.data import Split, make_split
from rationer.classifier.sources import EVAL_ONLY
from rationer.errors import FailedPrecondition

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class GroupSplit:
    seed: int
    mmlu: Split
    pro_test_categories: list[str]
    pro_val_categories: list[str]

    def assign(self, frame: pd.DataFrame) -> pd.Series:
        import pandas as pd

        part = self.mmlu.assign(frame)  # MMLU subjects and GSM8K shares; others "train"
        subj_part = {s: "test" for s in self.mmlu.test_subjects} | {s: "val" for s in self.mmlu.val_subjects}
        pro = frame["dataset"] == "mmlu_pro"
        cat_part = (
            frame["subject"]
            .map({c: "test" for c in self.pro_test_categories} | {c: "val" for c in self.pro_val_categories})
            .fillna("train")
        )
        mmlu_subj = frame.get("mmlu_subject", pd.Series("", index=frame.index)).fillna("")
        sub_part = mmlu_subj.map(lambda s: subj_part.get(s, "train") if s else "")
        agree = (sub_part == "") | (sub_part == cat_part)
        part[pro] = cat_part[pro].where(agree[pro], "drop")
        part[frame["dataset"].isin(EVAL_ONLY)] = "test"
        return part

    def to_dict(self) -> dict[str, object]:
        return {
            **self.mmlu.to_dict(),
            "kind": "group-v2",
            "mmlu_pro_test_categories": self.pro_test_categories,
            "mmlu_pro_val_categories": self.pro_val_categories,
            "eval_only_datasets": sorted(EVAL_ONLY),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> GroupSplit:
        return cls(
            seed=int(raw["seed"]),  # type: ignore[call-overload]
            mmlu=Split.from_dict(raw),
            pro_test_categories=list(raw["mmlu_pro_test_categories"]),  # type: ignore[call-overload]
            pro_val_categories=list(raw["mmlu_pro_val_categories"]),  # type: ignore[call-overload]
        )


def make_group_split(frame: pd.DataFrame, seed: int, n_pro_test: int = 3, n_pro_val: int = 2) -> GroupSplit:
    subjects = sorted(frame.loc[frame["dataset"] == "mmlu", "subject"].unique())
    cats = sorted(frame.loc[frame["dataset"] == "mmlu_pro", "subject"].unique())
    if cats and n_pro_test + n_pro_val >= len(cats):
        raise FailedPrecondition(f"need more than {n_pro_test + n_pro_val} MMLU-Pro categories, got {len(cats)}")
    random.Random(seed).shuffle(cats)
    return GroupSplit(
        seed=seed,
        mmlu=make_split(subjects, seed),
        pro_test_categories=sorted(cats[:n_pro_test]),
        pro_val_categories=sorted(cats[n_pro_test : n_pro_test + n_pro_val]),
    )
