"""A tiny synthetic training run end to end: compare, export, load with the serving scorer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from rationer.classifier import candidates as cands
from rationer.classifier.artifact import calibrate_score
from rationer.classifier.data import make_split
from rationer.classifier.features import FEATURE_NAMES, feature_matrix
from rationer.classifier.scorer import ComplexityScorer
from rationer.classifier.train import Prepared, train_router
from rationer.errors import InvalidArgument


def _synthetic(seed: int = 0) -> Prepared:
    """40 'subjects' x 15 prompts plus 150 'gsm8k' prompts; difficulty follows one direction."""
    rng = np.random.default_rng(seed)
    n_mmlu, n_gsm = 600, 150
    n = n_mmlu + n_gsm
    z = rng.normal(size=n)
    vectors = rng.normal(size=(n, 384)).astype(np.float32)
    vectors[:, 0] += 6 * z
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    hardness = z + rng.normal(scale=0.3, size=n)
    weak = hardness < 0.0
    # The strong model slips on a few easy prompts, so all three gain3 classes occur.
    strong = (hardness < 1.2) ^ (rng.random(n) < 0.08)
    subjects = [f"subject_{i // 15:02d}" for i in range(n_mmlu)] + ["gsm8k"] * n_gsm
    prompts = [f"Question {i}: what is {i} + {i * 7}?\nAnswer:" for i in range(n)]
    frame = pd.DataFrame(
        {
            "prompt": prompts,
            "dataset": ["mmlu"] * n_mmlu + ["gsm8k"] * n_gsm,
            "subject": subjects,
            "weak": weak,
            "strong": strong,
        }
    )
    split = make_split(sorted({s for s in subjects if s != "gsm8k"}), seed=1)
    return Prepared(frame, split, split.assign(frame).to_numpy(), vectors, feature_matrix(prompts), "synthetic")


SMALL = [
    c
    for c in cands.default_candidates(7)
    if c.name
    in {
        "logreg C=0.01 needs_strong+text",
        "mlp h=64 gain3+text",
        "knn k=50 gain3",
    }
]


def test_training_writes_an_artifact_the_scorer_reproduces(tmp_path: Path) -> None:
    prep = _synthetic()
    result = train_router(prep, tmp_path, seed=7, candidates=SMALL)
    card = result.card
    assert {r["name"] for r in card["selection"]["candidates"]} == {c.name for c in SMALL}
    assert card["onnx"]["max_abs_diff_vs_sklearn_on_val"] < 1e-5
    # The synthetic difficulty is learnable: the pick must beat random (APGR 0.5) clearly.
    assert card["metrics"]["test_mmlu"]["apgr"] > 0.6

    scorer = ComplexityScorer(tmp_path)
    test = prep.mask("test")
    texts = prep.frame.loc[test, "prompt"].tolist()
    served = scorer.score_batch(prep.vectors[test], texts)
    raw = cands.route_score(result.model, prep.inputs(result.candidate.use_text_features, test), result.candidate.label)
    trained = calibrate_score(raw, card["calibration"])
    # Calibration is strictly increasing: same order as the trained ranking score.
    assert card["calibration"]["a"] > 0
    assert np.all(np.diff(trained[np.argsort(raw)]) >= 0)
    np.testing.assert_allclose(served, trained, atol=1e-5)
    assert scorer.score(prep.vectors[test][0], texts[0]) == pytest.approx(float(served[0]), abs=1e-6)
    assert scorer.threshold == card["threshold"]


def test_training_is_reproducible(tmp_path: Path) -> None:
    prep = _synthetic()
    a = train_router(prep, tmp_path / "a", seed=7, candidates=SMALL).card
    b = train_router(prep, tmp_path / "b", seed=7, candidates=SMALL).card
    assert a["metrics"] == b["metrics"]
    assert a["threshold"] == b["threshold"]
    # Not the ONNX bytes: skl2onnx numbers some node names from a per-process counter.
    x, texts = prep.vectors[:50], prep.frame["prompt"][:50].tolist()
    np.testing.assert_array_equal(
        ComplexityScorer(tmp_path / "a").score_batch(x, texts), ComplexityScorer(tmp_path / "b").score_batch(x, texts)
    )


@pytest.mark.parametrize(
    "name", ["logreg C=0.01 weak_fails", "logreg C=0.001 gain3+text", "mlp h=64 needs_strong+text", "knn k=50 gain3"]
)
def test_each_model_kind_exports_with_the_same_probabilities(name: str, tmp_path: Path) -> None:
    prep = _synthetic(seed=2)
    cand = next(c for c in cands.default_candidates(7) if c.name == name)
    train = prep.mask("train")
    y = cands.label_vector(prep.frame["weak"][train], prep.frame["strong"][train], cand.label)
    model = cand.build().fit(prep.inputs(cand.use_text_features, train), y)
    x = prep.inputs(cand.use_text_features, prep.mask("test"))
    blob, output = cands.export_onnx(model, x.shape[1])
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    (probs,) = sess.run([output], {"X": x})
    np.testing.assert_allclose(np.asarray(probs), model.predict_proba(x), atol=1e-5)
    assert x.shape[1] == 384 + (len(FEATURE_NAMES) if cand.use_text_features else 0)


def test_scorer_rejects_wrong_vector_shape(tmp_path: Path) -> None:
    train_router(_synthetic(), tmp_path, seed=7, candidates=SMALL[:1])
    scorer = ComplexityScorer(tmp_path)
    with pytest.raises(InvalidArgument, match="shape"):
        scorer.score(np.zeros(10, dtype=np.float32), "hi")
    with pytest.raises(InvalidArgument, match="texts"):
        scorer.score_batch(np.zeros((2, 384), dtype=np.float32), ["only one"])
