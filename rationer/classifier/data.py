"""Router training data: RouteLLM's MMLU and GSM8K correctness tables.

Training-only module (needs pandas). Loads both datasets into one frame with
columns ``prompt, dataset, subject, weak, strong``, drops RouteLLM's
contaminated prompts, deduplicates on the prompt text and builds the split:
MMLU holds out whole subjects (generalisation to unseen topics), GSM8K has no
subjects so it holds out a seeded random share of its problems.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rationer.errors import FailedPrecondition

if TYPE_CHECKING:
    import pandas as pd

WEAK_COL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG_COL = "gpt-4-1106-preview"
WEAK_MODEL = WEAK_COL
STRONG_MODEL = STRONG_COL
DEFAULT_DATA_DIR = Path("..") / "shared" / "data"


def repo_root() -> Path:
    """The checkout this package lives in (editable installs), else the cwd."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").exists() else Path.cwd()


def resolve_data_dir(data_dir: Path | None) -> Path:
    """An explicit ``--data-dir`` is taken relative to the cwd; the default
    ``shared/data`` is tried beside the repo root and each folder above it,
    then as ``../shared/data`` from the cwd."""
    # A git worktree sits one level deeper than the main checkout, so the
    # default is looked for beside every ancestor of the repo root.
    candidates = (
        [data_dir]
        if data_dir is not None
        else [
            *(anc / "shared" / "data" for anc in repo_root().parents),
            Path.cwd() / DEFAULT_DATA_DIR,
        ]
    )
    for cand in candidates:
        if (cand / "routellm" / "mmlu" / "responses").is_dir():
            return cand.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise FailedPrecondition(
        f"router data not found (tried {tried}); pass --data-dir pointing at the folder that "
        "holds routellm/mmlu/responses and routellm/gsm8k"
    )


def _contaminated(path: Path) -> set[str]:
    import pandas as pd

    if not path.exists():
        return set()
    return set(pd.read_json(path, lines=True)["eval_prompt"])


def load_frame(data_dir: Path) -> pd.DataFrame:
    """Both datasets, contaminated prompts dropped, deduplicated on ``prompt``."""
    import pandas as pd

    root = data_dir / "routellm"
    frames = []
    for f in sorted((root / "mmlu" / "responses").glob("mmlu_*.csv")):
        df = pd.read_csv(f, usecols=["prompt", WEAK_COL, STRONG_COL])
        df["subject"] = f.stem[len("mmlu_") :]
        df["dataset"] = "mmlu"
        df = df[~df["prompt"].isin(_contaminated(root / "mmlu" / "contaminated_prompts.jsonl"))]
        frames.append(df)
    gsm = pd.read_csv(root / "gsm8k" / "gsm8k_responses.csv", usecols=["prompt", WEAK_COL, STRONG_COL])
    gsm = gsm[~gsm["prompt"].isin(_contaminated(root / "gsm8k" / "contaminated_prompts.jsonl"))]
    gsm["subject"] = "gsm8k"
    gsm["dataset"] = "gsm8k"
    frames.append(gsm)
    full = pd.concat(frames, ignore_index=True)
    full = full.rename(columns={WEAK_COL: "weak", STRONG_COL: "strong"})
    full["weak"] = full["weak"].astype(bool)
    full["strong"] = full["strong"].astype(bool)
    # A prompt duplicated across subject files would otherwise sit on both
    # sides of a subject split; keep its first (alphabetical-subject) row.
    full = full.drop_duplicates(subset="prompt", keep="first").reset_index(drop=True)
    return full[["prompt", "dataset", "subject", "weak", "strong"]]


@dataclass(frozen=True)
class Split:
    """Which MMLU subjects / GSM8K rows go where. Fully determined by ``seed``."""

    seed: int
    test_subjects: list[str]
    val_subjects: list[str]
    gsm8k_test_share: float = 0.3
    gsm8k_val_share: float = 0.15
    notes: dict[str, int] = field(default_factory=dict)

    def assign(self, frame: pd.DataFrame) -> pd.Series:
        """Per-row part name: ``train``, ``val`` or ``test``."""
        import numpy as np
        import pandas as pd

        part = pd.Series("train", index=frame.index, dtype=object)
        mmlu = frame["dataset"] == "mmlu"
        part[mmlu & frame["subject"].isin(self.test_subjects)] = "test"
        part[mmlu & frame["subject"].isin(self.val_subjects)] = "val"
        gsm_idx = frame.index[frame["dataset"] == "gsm8k"].to_numpy()
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(gsm_idx))
        n_test = round(len(gsm_idx) * self.gsm8k_test_share)
        n_val = round(len(gsm_idx) * self.gsm8k_val_share)
        part[gsm_idx[order[:n_test]]] = "test"
        part[gsm_idx[order[n_test : n_test + n_val]]] = "val"
        return part

    def to_dict(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "mmlu_test_subjects": self.test_subjects,
            "mmlu_val_subjects": self.val_subjects,
            "gsm8k_test_share": self.gsm8k_test_share,
            "gsm8k_val_share": self.gsm8k_val_share,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> Split:
        return cls(
            seed=int(raw["seed"]),  # type: ignore[call-overload]
            test_subjects=list(raw["mmlu_test_subjects"]),  # type: ignore[call-overload]
            val_subjects=list(raw["mmlu_val_subjects"]),  # type: ignore[call-overload]
            gsm8k_test_share=float(raw["gsm8k_test_share"]),  # type: ignore[arg-type]
            gsm8k_val_share=float(raw["gsm8k_val_share"]),  # type: ignore[arg-type]
        )


def make_split(subjects: list[str], seed: int, n_test: int = 12, n_val: int = 8) -> Split:
    """Hold out ``n_test`` MMLU subjects for testing and ``n_val`` for model selection."""
    if n_test + n_val >= len(subjects):
        raise FailedPrecondition(f"need more than {n_test + n_val} subjects to split, got {len(subjects)}")
    shuffled = sorted(subjects)
    random.Random(seed).shuffle(shuffled)
    return Split(
        seed=seed,
        test_subjects=sorted(shuffled[:n_test]),
        val_subjects=sorted(shuffled[n_test : n_test + n_val]),
    )
