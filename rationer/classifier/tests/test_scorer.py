"""The shipped artifact loads and scores with ONNX Runtime only."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rationer.classifier.artifact import default_artifact_dir, load_card
from rationer.classifier.scorer import ComplexityScorer
from rationer.errors import FailedPrecondition

HEAVY = ("sklearn", "torch", "pandas", "skl2onnx", "onnx", "transformers", "matplotlib")

PROBE = """
import json, sys
heavy = set(sys.argv[1].split(","))
import numpy as np
from rationer.classifier.scorer import ComplexityScorer
s = ComplexityScorer()
v = np.zeros(s.embedding_dim, dtype=np.float32); v[0] = 1.0
p = s.score(v, "What is 2 + 2?")
print(json.dumps({"p": p, "threshold": s.threshold,
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in heavy)}))
"""


def test_shipped_artifact_scores_without_training_libraries() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(HEAVY)], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert 0.0 <= result["p"] <= 1.0
    assert 0.0 < result["threshold"] < 1.0


def test_shipped_card_documents_data_split_and_embedder() -> None:
    card = load_card()
    assert card["embedder"].startswith("sentence-transformers/all-MiniLM-L6-v2 onnx sha256:")
    assert set(card["split"]["mmlu_test_subjects"]).isdisjoint(card["split"]["mmlu_val_subjects"])
    for key in ("test_mmlu", "test_gsm8k", "test_mmlu_pro", "test_alpaca_eval", "leave_one_dataset_out"):
        assert key in card["metrics"]
    # Licences: evaluation-only data never trains the shipped model.
    assert not set(card["data"]["trained_on"]) & {"alpaca_eval", "arc", "mbpp", "winogrande"}
    assert card["split"]["kind"] == "group-v2"
    assert card["onnx"]["max_abs_diff_vs_sklearn_on_val"] < 1e-5


def test_score_text_equals_embed_then_score() -> None:
    try:
        scorer = ComplexityScorer()
        texts = ["Translate 'good morning' to French.", "Prove that there are infinitely many primes."]
        by_text = scorer.score_texts(texts)
    except FailedPrecondition as exc:  # embedder not exported on this machine
        pytest.skip(str(exc))
    from rationer.embedding import Embedder

    vectors = Embedder().embed(texts)
    np.testing.assert_allclose(by_text, scorer.score_batch(vectors, texts), atol=1e-6)
    assert scorer.score_text(texts[1]) == pytest.approx(float(by_text[1]), abs=1e-5)


def test_missing_artifact_is_an_actionable_error(tmp_path: object) -> None:
    with pytest.raises(FailedPrecondition, match="rationer train router"):
        ComplexityScorer(tmp_path)  # type: ignore[arg-type]


def test_default_artifact_is_inside_the_package() -> None:
    assert (default_artifact_dir() / "model.onnx").stat().st_size < 2_000_000
