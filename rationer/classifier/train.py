"""``rationer train router``: fit, compare, pick by held-out APGR, export to ONNX.

Protocol (group split v2, ``split2``): candidates are fitted on the train
part (MMLU train subjects, 55% of GSM8K, the MMLU-Pro train categories),
compared on the validation part (8 other MMLU subjects, 15% of GSM8K, 2
MMLU-Pro categories) by the mean of the data sets' APGR, and the winner's
default threshold is also read off the validation part. The test part (12
unseen MMLU subjects, 30% of GSM8K, 3 MMLU-Pro categories, and every
evaluation-only data set) is only scored, never used for a choice.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import structlog

from rationer.classifier import candidates as cands
from rationer.classifier import metrics, mf
from rationer.classifier.artifact import (
    ARTIFACT_VERSION,
    CARD_FILE,
    MODEL_FILE,
    THREE_WAY_LABELS,
    calibrate_score,
    file_sha256,
    write_card,
)
from rationer.classifier.data import Split
from rationer.classifier.embed_cache import cached_embed
from rationer.classifier.features import FEATURE_NAMES, feature_matrix
from rationer.classifier.sources import load_all
from rationer.classifier.split2 import GroupSplit, make_group_split
from rationer.errors import FailedPrecondition

if TYPE_CHECKING:
    import pandas as pd

    from rationer.classifier.embed_cache import SupportsEmbed

log = structlog.get_logger(__name__)

DEFAULT_SEED = 7
SHARE_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class Prepared:
    """The frame, its split, and every row's model inputs."""

    frame: pd.DataFrame
    split: GroupSplit | Split
    part: npt.NDArray[np.object_]
    vectors: npt.NDArray[np.float32]
    text_feats: npt.NDArray[np.float32]
    embedder_identity: str

    def inputs(self, use_text_features: bool, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
        x = self.vectors[mask]
        if use_text_features:
            x = np.hstack([x, self.text_feats[mask]])
        return np.ascontiguousarray(x, dtype=np.float32)

    def mask(self, part: str, dataset: str | None = None) -> npt.NDArray[np.bool_]:
        m = self.part == part
        if dataset is not None:
            m &= (self.frame["dataset"] == dataset).to_numpy()
        if part in ("train", "val") and "shippable" in self.frame:
            # Licences: evaluation-only data never trains or selects a model.
            m &= self.frame["shippable"].to_numpy(dtype=bool)
        return np.asarray(m, dtype=bool)

    def datasets(self, part: str) -> list[str]:
        """Data sets with rows in ``part``, in first-appearance order."""
        return list(dict.fromkeys(self.frame.loc[self.mask(part), "dataset"]))


def prepare(
    data_dir: Path,
    embedder: SupportsEmbed,
    seed: int,
    cache_dir: Path | None = None,
    split: GroupSplit | None = None,
) -> Prepared:
    """Every data set (``sources.load_all``), its group split and embeddings.

    Embeddings are cached per data set, so adding or changing one file
    re-embeds only that file's prompts.
    """
    frame = load_all(data_dir)
    if split is None:
        split = make_group_split(frame, seed)
    part = split.assign(frame).to_numpy()
    texts = frame["prompt"].tolist()
    vectors: npt.NDArray[np.float32] | None = None
    for ds in frame["dataset"].unique():
        m = (frame["dataset"] == ds).to_numpy()
        vecs = cached_embed(embedder, [t for t, keep in zip(texts, m, strict=True) if keep], cache_dir)
        if vectors is None:
            vectors = np.zeros((len(frame), vecs.shape[1]), dtype=np.float32)
        vectors[m] = vecs
    assert vectors is not None
    return Prepared(frame, split, part, vectors, feature_matrix(texts), embedder.identity)


def _val_apgr(prep: Prepared, scores: npt.NDArray[np.float64]) -> dict[str, float]:
    out = {}
    val = prep.mask("val")
    for ds in prep.datasets("val"):
        m = (prep.frame["dataset"] == ds).to_numpy()[val]
        sub = prep.frame[val][m]
        out[ds] = metrics.apgr(metrics.routing_curve(scores[m], sub["weak"], sub["strong"]))
    out["mean"] = float(np.mean(list(out.values())))
    return out


def fit(cand: cands.Candidate, prep: Prepared, train_mask: npt.NDArray[np.bool_]) -> Any:
    if "train_datasets" in cand.params:
        train_mask = train_mask & prep.frame["dataset"].isin(cand.params["train_datasets"]).to_numpy()
    sub = prep.frame[train_mask]
    if cand.kind == "mf":
        y = mf.outcome_matrix(sub, cand.params.get("aux", ()))
        return mf.fit_mf(
            prep.inputs(cand.use_text_features, train_mask), y.to_numpy(), list(y.columns),
            rank=int(cand.params["rank"]), l2=float(cand.params["l2"]), seed=int(cand.params.get("seed", 7)),
            groups=sub["dataset"].to_numpy() if cand.params.get("dataset_bias") else None,
        )  # fmt: skip
    y = cands.label_vector(sub["weak"], sub["strong"], cand.label)
    n_classes = 3 if cand.label in THREE_WAY_LABELS else 2
    if len(np.unique(y)) != n_classes:
        raise FailedPrecondition(
            f"label {cand.label} needs all {n_classes} classes in the training rows, found {np.unique(y).tolist()}"
        )
    model = cand.build()
    model.fit(prep.inputs(cand.use_text_features, train_mask), y)
    return model


def compare(prep: Prepared, candidates: list[cands.Candidate]) -> list[dict[str, Any]]:
    rows = []
    train, val = prep.mask("train"), prep.mask("val")
    for cand in candidates:
        t0 = time.perf_counter()
        model = fit(cand, prep, train)
        scores = cands.route_score(model, prep.inputs(cand.use_text_features, val), cand.label)
        row = {**cand.describe(), "val_apgr": _val_apgr(prep, scores), "fit_s": time.perf_counter() - t0}
        log.info("candidate", name=cand.name, val_apgr=row["val_apgr"], fit_s=round(row["fit_s"], 1))
        rows.append(row)
    return rows


def threshold_for_quality(
    scores: npt.NDArray[np.float64], weak: npt.ArrayLike, strong: npt.ArrayLike, fraction: float = 0.95
) -> tuple[float, float]:
    """(threshold, strong share) that first reaches ``fraction`` of strong-only quality."""
    curve = metrics.routing_curve(scores, weak, strong)
    share = metrics.share_for_quality(curve, fraction)
    share = 1.0 if share is None else share
    return share_threshold(scores, share), share


def fit_platt(raw: npt.NDArray[np.float64], needs_strong: npt.ArrayLike) -> dict[str, float] | None:
    """sigmoid(a * raw + b) fitted to the needs_strong label; None if the fit is not increasing."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(needs_strong)
    if len(np.unique(y)) < 2:
        return None
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if a <= 0:
        log.warning("calibration slope not positive; leaving scores uncalibrated", a=a)
        return None
    return {"a": a, "b": b}


def share_threshold(scores: npt.ArrayLike, share: float) -> float:
    """The score at or above which ``share`` of these prompts fall."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    k = min(len(s) - 1, max(0, int(np.ceil(share * len(s))) - 1))
    return float(s[k])


@dataclass
class TrainResult:
    card: dict[str, Any]
    model: Any
    candidate: cands.Candidate


def train_router(
    prep: Prepared,
    out_dir: Path,
    seed: int = DEFAULT_SEED,
    candidates: list[cands.Candidate] | None = None,
) -> TrainResult:
    """Compare candidates, export the best to ``out_dir``, return its card."""
    pool = candidates if candidates is not None else cands.default_candidates(seed)
    rows = compare(prep, pool)
    # max() keeps the first of equal scores: the candidate list runs simplest first.
    best = pool[max(range(len(rows)), key=lambda i: rows[i]["val_apgr"]["mean"])]
    model = fit(best, prep, prep.mask("train"))
    dim = prep.vectors.shape[1] + (len(FEATURE_NAMES) if best.use_text_features else 0)
    onnx_bytes, prob_output = mf.export_onnx(model) if best.kind == "mf" else cands.export_onnx(model, dim)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MODEL_FILE).write_bytes(onnx_bytes)

    val = prep.mask("val")
    calibration, val_scores = _calibrated_val_scores(prep, model, best)
    threshold, val_share = threshold_for_quality(val_scores, prep.frame["weak"][val], prep.frame["strong"][val])
    parity = _onnx_parity(out_dir / MODEL_FILE, prob_output, model, prep.inputs(best.use_text_features, val))
    card = {
        "artifact_version": ARTIFACT_VERSION,
        "name": "rationer-complexity",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "embedder": prep.embedder_identity,
        "input": {
            "embedding_dim": int(prep.vectors.shape[1]),
            "use_text_features": best.use_text_features,
            "text_features": list(FEATURE_NAMES) if best.use_text_features else [],
            "dim": dim,
        },
        "onnx": {
            "file": MODEL_FILE,
            "sha256": file_sha256(out_dir / MODEL_FILE),
            "probability_output": prob_output,
            "max_abs_diff_vs_sklearn_on_val": parity,
        },
        "label": {"name": best.label, "meaning": cands.LABELS[best.label]},
        "score": _score_description(best.label, calibration),
        "calibration": (
            None if calibration is None else {**calibration, "method": "platt", "fitted_on": "validation part"}
        ),
        "classifier": best.describe(),
        "threshold": threshold,
        "threshold_rule": f"validation part reaches 95% of strong-only quality at {val_share:.3f} strong share",
        "strong_share_thresholds": {f"{s:.1f}": share_threshold(val_scores, s) for s in SHARE_GRID},
        "data": _data_summary(prep, best),
        "split": prep.split.to_dict(),
        "seed": seed,
        "selection": {"criterion": "mean over data sets of validation APGR", "candidates": rows},
        "metrics": metrics.split_metrics(prep, model, best, fit),
        "card_file": CARD_FILE,
    }
    write_card(out_dir, card)
    log.info("artifact written", out=str(out_dir), chosen=best.name)
    return TrainResult(card, model, best)


def _calibrated_val_scores(
    prep: Prepared, model: Any, best: cands.Candidate
) -> tuple[dict[str, float] | None, npt.NDArray[np.float64]]:
    """Fit the Platt map on the validation part; return it and the calibrated val scores."""
    val = prep.mask("val")
    raw = cands.route_score(model, prep.inputs(best.use_text_features, val), best.label)
    needs_strong = cands.label_vector(prep.frame["weak"][val], prep.frame["strong"][val], "needs_strong")
    calibration = fit_platt(raw, needs_strong)
    return calibration, calibrate_score(raw, calibration)


def _score_description(label: str, calibration: dict[str, float] | None) -> str:
    order = (
        "ranked by P(gain) - P(loss), the expected accuracy change of going strong"
        if label == "gain3"
        else f"ranked by P({label})"
    )
    value = "value Platt-calibrated to P(weak wrong and strong right)" if calibration else "value uncalibrated"
    return f"{order}; {value}"


def _onnx_parity(path: Path, output: str, model: Any, x: npt.NDArray[np.float32]) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probs,) = sess.run([output], {sess.get_inputs()[0].name: x})
    return float(np.max(np.abs(np.asarray(probs) - model.predict_proba(x))))


def _data_summary(prep: Prepared, best: cands.Candidate) -> dict[str, Any]:
    f = prep.frame
    trained = prep.mask("train")
    if "train_datasets" in best.params:
        trained &= f["dataset"].isin(best.params["train_datasets"]).to_numpy()
    counts = {
        f"{ds}_{p}": int(((f["dataset"] == ds).to_numpy() & (prep.part == p)).sum())
        for ds in dict.fromkeys(f["dataset"])
        for p in ("train", "val", "test", "drop")
        if ((f["dataset"] == ds).to_numpy() & (prep.part == p)).any()
    }
    return {
        "source": "lm-sys/RouteLLM routellm/evals {mmlu,gsm8k} @ 0b64fdaf; routing/ (SOURCES.tsv)",
        "weak_model": "Mixtral-8x7B-Instruct (every table)",
        "strong_model": "gpt-4-1106-preview (MMLU, GSM8K, RouterBench), gemini-1.5-pro (MMLU-Pro), "
        "gpt-4-1106-preview as judge-preferred (AlpacaEval)",
        "trained_on": sorted(set(f.loc[trained, "dataset"])),
        "evaluation_only": sorted(set(f.loc[~f.get("shippable", True), "dataset"])) if "shippable" in f else [],
        "rows_after_cleaning": len(f),
        "cleaning": "dropped RouteLLM contaminated prompts; deduplicated on prompt text (first kept)",
        "rows": counts,
    }


def dumps(card: dict[str, Any]) -> str:
    return json.dumps(card, indent=2)
