"""Train, evaluate and calibrate end to end on a tiny data folder shaped like ../shared/data.

Real loaders, the real group split, a real ONNX export and the real serving
scorer; only the embedder is a bag-of-words stand-in, so the run takes
seconds and its difficulty signal is known.
"""

from __future__ import annotations

import hashlib
import json
import random
import tomllib
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from rationer.classifier import candidates as cands
from rationer.classifier.calibrate import calibrate
from rationer.classifier.data import STRONG_COL, WEAK_COL
from rationer.classifier.evaluate import run_eval
from rationer.classifier.scorer import ComplexityScorer
from rationer.classifier.sources import ALPACA_FILE
from rationer.classifier.train import prepare, train_router

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu")


class BagOfWords:
    """Deterministic stand-in for MiniLM: hashed word counts, unit length."""

    identity = "test-bag-of-words/1"

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, int(hashlib.md5(w.encode()).hexdigest()[:6], 16) % 384] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
        return out

    def embed_one(self, text: str) -> npt.NDArray[np.float32]:
        out: npt.NDArray[np.float32] = self.embed([text])[0]
        return out


def _item(rng: random.Random, i: int) -> tuple[str, bool, bool]:
    """A prompt whose words say how hard it is, with the two models' outcomes."""
    hard = rng.random() < 0.4
    words = " ".join(rng.choice(WORDS) for _ in range(6))
    text = f"Item {i}: {words} {'intricate multistep proof' if hard else 'simple lookup'}?"
    weak = (not hard) if rng.random() > 0.1 else hard
    strong = rng.random() > 0.15
    return text, weak, strong


def write_data(root: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    n = 0
    mmlu = root / "routellm" / "mmlu" / "responses"
    mmlu.mkdir(parents=True)
    for s in range(24):
        rows = []
        for _ in range(14):
            text, weak, strong = _item(rng, n := n + 1)
            rows.append({"prompt": text, WEAK_COL: weak, STRONG_COL: strong})
        pd.DataFrame(rows).to_csv(mmlu / f"mmlu_subject{s:02d}.csv", index=False)
    gsm = root / "routellm" / "gsm8k"
    gsm.mkdir(parents=True)
    rows = []
    for _ in range(90):
        text, weak, strong = _item(rng, n := n + 1)
        rows.append({"prompt": text, WEAK_COL: weak, STRONG_COL: strong})
    pd.DataFrame(rows).to_csv(gsm / "gsm8k_responses.csv", index=False)
    routing = root / "routing"
    routing.mkdir()
    with (routing / "mmlu_pro_correctness.jsonl").open("w") as fh:
        for c in range(7):
            for _ in range(20):
                text, weak, strong = _item(rng, n := n + 1)
                row = {"question": text, "options": ["yes", "no"], "category": f"cat{c}", "src": f"src{c}",
                       "gemini_1_5_pro": strong, "mixtral_8x7b": weak, "llama_3_1_70b": strong and rng.random() > 0.2,
                       "llama_3_1_8b": weak and rng.random() > 0.2}  # fmt: skip
                fh.write(json.dumps(row) + "\n")
    with (routing / ALPACA_FILE).open("w") as fh:
        for _ in range(60):
            text, weak, strong = _item(rng, n := n + 1)
            pref = 1.5 if weak and strong else (2.0 if weak else 1.0)
            fh.write(json.dumps({"prompt": text, "source": "oasst", "preference": pref}) + "\n")
    return root


SMALL = [
    c
    for c in cands.default_candidates(7)
    if c.name
    in {
        "logreg C=0.01 gain3+text",
        "mf r=16 l2=0.001+2aux+text",
        "mf r=16 l2=0.001+2aux+dsbias+text",
        "logreg C=0.001 gain3+text [gsm8k+mmlu]",
    }
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, dict[str, Any]]:
    base = tmp_path_factory.mktemp("pipeline")
    data = write_data(base / "data")
    prep = prepare(data, BagOfWords(), seed=7, cache_dir=base / "cache")
    result = train_router(prep, base / "artifact", seed=7, candidates=SMALL)
    return data, base / "artifact", base / "cache", result.card


def test_training_keeps_evaluation_only_data_out_and_exports(trained: tuple[Path, Path, Path, dict[str, Any]]) -> None:
    _, artifact, _, card = trained
    assert len(SMALL) == 4
    chosen = card["classifier"]["params"]
    assert card["data"]["trained_on"] == chosen.get("train_datasets", ["gsm8k", "mmlu", "mmlu_pro"])
    assert card["data"]["evaluation_only"] == ["alpaca_eval"]
    assert card["split"]["kind"] == "group-v2"
    assert card["onnx"]["max_abs_diff_vs_sklearn_on_val"] < 1e-5
    assert set(card["selection"]["candidates"][0]["val_apgr"]) == {"mmlu", "gsm8k", "mmlu_pro", "mean"}
    # The difficulty words are learnable: the chosen model beats random clearly on unseen subjects.
    assert card["metrics"]["test_mmlu"]["apgr"] > 0.65
    assert card["metrics"]["test_alpaca_eval"]["apgr"] > 0.6
    scorer = ComplexityScorer(artifact, embedder=cast(Any, BagOfWords()))
    easy, hard = scorer.score_texts(["Item 0: alpha simple lookup?", "Item 0: alpha intricate multistep proof?"])
    assert hard > easy


def test_eval_reports_held_out_rows_baselines_lodo_and_plot(
    trained: tuple[Path, Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    data, artifact, cache, card = trained
    png = tmp_path / "curves.png"
    result = run_eval(artifact, data, cache, png, embedder=BagOfWords())
    assert set(result["held_out"]) == {"mmlu", "gsm8k", "mmlu_pro", "alpaca_eval"}
    rows = card["data"]["rows"]
    for ds, by_policy in result["held_out"].items():
        assert set(by_policy) == {"classifier", "random", "length", "oracle"}
        assert by_policy["classifier"]["n"] == rows[f"{ds}_test"]
        assert set(by_policy["classifier"]) >= {"apgr", "cpt50", "cpt80", "share_for_95pct_quality"}
        assert by_policy["random"]["apgr"] == pytest.approx(0.5)
        assert by_policy["oracle"]["apgr"] >= by_policy["classifier"]["apgr"]
    # The served ONNX scores agree with what training measured on the same rows.
    assert result["held_out"]["mmlu"]["classifier"]["apgr"] == pytest.approx(card["metrics"]["test_mmlu"]["apgr"], 1e-4)
    assert set(result["leave_one_dataset_out"]) == {"mmlu", "gsm8k", "mmlu_pro"}
    assert "lodo_mmlu_better_than_length" in result["targets"]
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_calibrate_quality_mode_on_the_trained_artifact(
    trained: tuple[Path, Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    _, artifact, _, _ = trained
    rng = random.Random(5)
    lines = [json.dumps({"header": {"name": "t"}})]
    for i in range(60):
        text, weak, strong = _item(rng, 10_000 + i)
        lines.append(json.dumps({"messages": [{"role": "user", "content": text}],
                                 "labels": {"weak_ok": weak, "strong_ok": strong}}))  # fmt: skip
    prompts = tmp_path / "trace.jsonl"
    prompts.write_text("\n".join(lines) + "\n")
    config = tmp_path / "router.toml"
    bow = cast(Any, BagOfWords())
    report = calibrate(prompts, None, config, artifact, quality=0.95, embedder=bow)
    assert report["prompts"] == 60
    assert report["achieved_quality_vs_strong_only"] >= 0.95
    # A learned ranking needs fewer strong calls than all of them.
    assert report["achieved_strong_share"] < 0.8
    assert tomllib.loads(config.read_text())["router"]["strong_threshold"] == report["strong_threshold"]
    share = calibrate(prompts, 0.3, config, artifact, embedder=bow)
    assert share["achieved_strong_share"] == pytest.approx(0.3, abs=0.02)


@pytest.mark.parametrize("groups", [False, True])
def test_mf_onnx_matches_numpy_with_and_without_group_biases(groups: bool) -> None:
    import onnxruntime as ort

    from rationer.classifier import mf

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 20)).astype(np.float32)
    hard = x[:, 0] > 0
    y = np.stack([rng.random(300) > 0.2, ~hard ^ (rng.random(300) < 0.1), rng.random(300) > 0.5], axis=1).astype(float)
    y[:150, 2] = np.nan  # one table lacks the aux model
    g = np.repeat(["a", "b"], 150) if groups else None
    model = mf.fit_mf(x, y, ["strong", "weak", "m:aux"], rank=4, groups=g, max_iter=100)
    blob, out = mf.export_onnx(model)
    (probs,) = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run([out], {"X": x})
    np.testing.assert_allclose(probs, model.predict_proba(x), atol=1e-5)
    gain = model.predict_proba(x)[:, 2] - model.predict_proba(x)[:, 0]
    assert gain[hard].mean() > gain[~hard].mean()
