"""``rationer train cache``: fit the verifier, calibrate it, export to ONNX.

Protocol (docs/cache.md, "The verifier"):

* **fit** on fow-cache's train half only (``pairsets.fow_split``). MSRP and SICK are under
  research licences that allow evaluating and calibrating on them but not
  shipping a model trained on them; with these ten features and strong
  regularisation (C = 0.1) a fit on all three train splits ranks the test
  pairs the same way (measured; the figures are in docs/cache.md).
* **calibrate** on fow-cache train, MSRP train+val and SICK train+trial: the
  curve of false-hit rate per group against the score threshold ships in
  the card, and ``max_false_hit_rate`` picks the operating point from it.
* **report** on the fow-cache, MSRP and SICK test splits only (``rationer eval cache``);
  no test row is ever fitted, calibrated or tuned on.

Offline only: imports sklearn and skl2onnx (the ``train`` extra).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from services.cache import pairsets
from services.cache.keys import normalize
from services.cache.pair_features import FEATURE_NAMES, N_FEATURES, feature_matrix
from services.cache.verifier import ARTIFACT_VERSION, CARD_FILE, LEXICAL_SCORE, MODEL_FILE

if TYPE_CHECKING:
    from rationer.classifier.embed_cache import SupportsEmbed

C_REGULARISATION = 0.1
CANDIDATE_FLOOR = 0.5  # the cache's min_similarity: candidates below it are never scored
# Scores an exact (normalised) repeat gets in curves: the cache serves it by
# the exact fast path whatever the threshold.
EXACT_SCORE = 2.0
FIT_SETS: tuple[tuple[str, str], ...] = (("fow-cache", "train"),)
CALIBRATION_SETS: tuple[tuple[str, str], ...] = (
    ("fow-cache", "train"), ("msrp", "train"), ("msrp", "val"), ("sick", "train"), ("sick", "trial"),
)  # fmt: skip
TEST_SETS: tuple[tuple[str, str], ...] = (("fow-cache", "test"), ("msrp", "test"), ("sick", "test"))


@dataclass
class Scored:
    """Pairs with their cosine, features and labels, in one order."""

    pairs: list[pairsets.Pair]
    cos: npt.NDArray[np.float32]
    x: npt.NDArray[np.float32]
    exact: npt.NDArray[np.bool_]
    lexical: npt.NDArray[np.bool_]  # pair_features.lexical_match

    @property
    def y(self) -> npt.NDArray[np.bool_]:
        return np.array([p.same_answer for p in self.pairs], dtype=bool)

    def trap_group(self) -> list[str]:
        """Calibration group of each trap (SICK's two kinds apart); "" for should-hit pairs."""
        return ["" if p.same_answer else (f"sick/{p.group}" if p.dataset == "sick" else p.dataset) for p in self.pairs]

    @property
    def datasets(self) -> list[str]:
        return [p.dataset for p in self.pairs]


def score_pairs(pairs: list[pairsets.Pair], embedder: SupportsEmbed, cache_dir: Path | None = None) -> Scored:
    from rationer.classifier.embed_cache import cached_embed

    texts = [p.a for p in pairs] + [p.b for p in pairs]
    vecs = cached_embed(embedder, texts, cache_dir=cache_dir)
    n = len(pairs)
    cos = np.clip(np.sum(vecs[:n] * vecs[n:], axis=1), -1.0, 1.0).astype(np.float32)
    x, lexical = feature_matrix([(p.a, p.b) for p in pairs], cos)
    exact = np.array([normalize(p.a) == normalize(p.b) for p in pairs], dtype=bool)
    return Scored(pairs, cos, x, exact, lexical)


def load_scored(sets: tuple[tuple[str, str], ...], embedder: SupportsEmbed, data_dir: Path | None,
                cache_dir: Path | None) -> Scored:  # fmt: skip
    pairs = [p for ds, split in sets for p in pairsets.load(ds, split, data_dir)]
    return score_pairs(pairs, embedder, cache_dir)


def served_scores(proba: npt.ArrayLike, s: Scored, floor: float = CANDIDATE_FLOOR,
                  lexical: bool = True) -> npt.NDArray[np.float64]:  # fmt: skip
    """What the cache does with each pair: exact repeats always served, pairs
    under the similarity floor never scored, lexical matches at
    ``LEXICAL_SCORE`` (with ``lexical``, as the shipped card says), the rest
    by probability."""
    out = np.asarray(proba, dtype=np.float64).copy()
    if lexical:
        out[s.lexical] = np.maximum(out[s.lexical], LEXICAL_SCORE)
    out[s.cos < floor] = 0.0
    out[s.exact] = EXACT_SCORE
    return out


def dataset_weights(datasets: list[str], y: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """Each data set weighs the same, and within it both classes do."""
    ds = np.array(datasets)
    w = np.zeros(len(y))
    for name in set(datasets):
        for cls in (False, True):
            m = (ds == name) & (y == cls)
            w[m] = 1.0 / max(int(m.sum()), 1)
    total: float = float(w.sum())
    return w * len(y) / total


def fit(s: Scored) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=C_REGULARISATION, max_iter=5000))
    model.fit(s.x, s.y, logisticregression__sample_weight=dataset_weights(s.datasets, s.y))
    return model


def curve(scores: npt.NDArray[np.float64], s: Scored, points: int = 400) -> dict[str, Any]:
    """False-hit rate per trap group and recall per data set at each of
    ``points`` thresholds (quantiles of the scored pairs, ascending)."""
    inner = scores[(scores > 0) & (scores < EXACT_SCORE)]
    distinct = np.unique(inner)
    grid = distinct if len(distinct) <= points else np.unique(np.quantile(inner, np.linspace(0, 1, points)))
    if not len(grid):
        grid = np.array([0.5])
    # Rounded before use, so the rates are those of the thresholds as stored.
    grid = np.unique(np.concatenate([np.floor(grid * 1e6) / 1e6, [1.0]]))
    y, groups, ds = s.y, np.array(s.trap_group()), np.array(s.datasets)
    served = scores[None, :] >= grid[:, None]
    fh = {g: served[:, groups == g].mean(axis=1).round(5).tolist() for g in sorted(set(groups) - {""})}
    rec = {d: served[:, (ds == d) & y].mean(axis=1).round(5).tolist() for d in sorted(set(ds)) if ((ds == d) & y).any()}
    return {"thresholds": grid.tolist(), "false_hit": fh, "recall": rec,
            "n_traps": {g: int((groups == g).sum()) for g in fh}}  # fmt: skip


def export_onnx(model: Any, path: Path) -> None:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(model, initial_types=[("features", FloatTensorType([None, N_FEATURES]))],
                  options={id(model): {"zipmap": False}}, target_opset=17)  # fmt: skip
    path.write_bytes(onx.SerializeToString())


def onnx_probabilities(path: Path, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = next(o.name for o in sess.get_outputs() if "prob" in o.name)
    return np.asarray(sess.run([name], {sess.get_inputs()[0].name: x})[0], dtype=np.float64)[:, 1]


def train(out_dir: Path, embedder: SupportsEmbed, data_dir: Path | None = None,
          cache_dir: Path | None = None) -> dict[str, Any]:  # fmt: skip
    fit_on = load_scored(FIT_SETS, embedder, data_dir, cache_dir)
    model = fit(fit_on)
    out_dir.mkdir(parents=True, exist_ok=True)
    export_onnx(model, out_dir / MODEL_FILE)
    calib = load_scored(CALIBRATION_SETS, embedder, data_dir, cache_dir)
    proba = onnx_probabilities(out_dir / MODEL_FILE, calib.x)
    # The ONNX graph must score like the fitted model it came from.
    drift = float(np.max(np.abs(proba - model.predict_proba(calib.x)[:, 1])))
    if drift > 1e-4:
        raise RuntimeError(f"ONNX export disagrees with sklearn by {drift}")
    lr, scaler = model.steps[1][1], model.steps[0][1]
    weights = zip(FEATURE_NAMES, lr.coef_[0], scaler.scale_, strict=True)
    card = {
        "artifact_version": ARTIFACT_VERSION,
        "features": list(FEATURE_NAMES),
        "model": f"StandardScaler + LogisticRegression(C={C_REGULARISATION}), data sets weighted equally",
        "fitted_on": [f"{d}:{sp}" for d, sp in FIT_SETS],
        "calibrated_on": [f"{d}:{sp}" for d, sp in CALIBRATION_SETS],
        "candidate_floor": CANDIDATE_FLOOR,
        "lexical_match": True,  # pair_features.lexical_match pairs score LEXICAL_SCORE (in the curve too)
        "embedder": getattr(embedder, "identity", ""),
        "weights_per_unit": {n: round(float(w / sd), 4) for n, w, sd in weights},
        "onnx_sha256": hashlib.sha256((out_dir / MODEL_FILE).read_bytes()).hexdigest(),
        "trained": dt.date.today().isoformat(),
        "calibration": curve(served_scores(proba, calib), calib),
    }
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return card


def leave_one_out(embedder: SupportsEmbed, data_dir: Path | None = None, cache_dir: Path | None = None,
                  bound: float = 0.01) -> dict[str, Any]:  # fmt: skip
    """Each data set held out of fitting and calibration, scored on its test
    split at ``bound``. MSRP and SICK are never in the fit, so holding one out
    drops it from calibration only; holding out fow-cache needs a fit on MSRP
    and SICK train splits: a research figure, never a shipped model."""
    from services.cache.evaluate import cosine_recall_at, rates
    from services.cache.verifier import operating_point

    calib_all = {d: load_scored(tuple(s for s in CALIBRATION_SETS if s[0] == d), embedder, data_dir, cache_dir)
                 for d in pairsets.DATASETS}  # fmt: skip
    out: dict[str, Any] = {}
    for held, split in TEST_SETS:
        rest = [d for d in pairsets.DATASETS if d != held]
        fit_on = calib_all["fow-cache"] if held != "fow-cache" else _concat([calib_all[d] for d in rest])
        model = fit(fit_on)
        calib = _concat([calib_all[d] for d in rest])
        point = operating_point(curve(served_scores(model.predict_proba(calib.x)[:, 1], calib), calib), bound)
        test = load_scored(((held, split),), embedder, data_dir, cache_dir)
        served = served_scores(model.predict_proba(test.x)[:, 1], test) >= point.threshold
        r = rates(served, test)
        out[held] = {"fitted_on": "fow-cache" if held != "fow-cache" else "+".join(rest), "calibrated_on": rest,
                     "threshold": point.threshold, **r,
                     "cosine_at_same_false_hit": cosine_recall_at(test.cos, test, r["false_hit_all"])}  # fmt: skip
    return out


def _concat(parts: list[Scored]) -> Scored:
    return Scored([p for s in parts for p in s.pairs], np.concatenate([s.cos for s in parts]),
                  np.vstack([s.x for s in parts]), np.concatenate([s.exact for s in parts]),
                  np.concatenate([s.lexical for s in parts]))  # fmt: skip
