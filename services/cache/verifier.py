"""The verifier: would the answer cached for a candidate be right for this
prompt? A calibrated logistic regression over :mod:`pair_features`, run in
ONNX Runtime on each FAISS candidate above the loose similarity floor.

The artifact (``verifier.onnx`` + ``verifier_card.json``) ships a
calibration curve: for each score threshold, the false-hit rate it gave on
every calibration group (fow-cache traps, MSRP non-paraphrases, SICK
contradictions, SICK neutral pairs). The operator's error bound
``[cache] max_false_hit_rate`` picks the lowest threshold whose false-hit
rate is within the bound on *every* group; ``rationer calibrate cache``
measures the same on the operator's own pairs and writes an explicit
``verifier_threshold`` instead. Serving imports onnxruntime only (no
sklearn, no torch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from rationer.errors import FailedPrecondition, InvalidArgument
from services.cache import guard
from services.cache.pair_features import FEATURE_NAMES, N_FEATURES, pair_features

ARTIFACT_VERSION = 1
MODEL_FILE = "verifier.onnx"
CARD_FILE = "verifier_card.json"
# A threshold no probability reaches: "serve no semantic candidate".
NEVER = 1.0
# The score of a lexical match (pair_features.lexical_match): above every
# operating point except NEVER, so the bound still turns semantic hits off.
LEXICAL_SCORE = 0.999999


def default_artifact_dir() -> Path:
    return Path(__file__).resolve().parent / "artifacts" / f"verifier-v{ARTIFACT_VERSION}"


def check_bound(bound: float) -> float:
    if not 0.0 < bound < 1.0:
        raise InvalidArgument(f"max_false_hit_rate must be in (0, 1), got {bound}")
    return bound


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    bound: float
    false_hit: dict[str, float]  # per calibration group, at this threshold
    recall: dict[str, float]  # per calibration data set, at this threshold


def operating_point(curve: dict[str, Any], bound: float) -> OperatingPoint:
    """The lowest threshold of ``curve`` whose false-hit rate is within
    ``bound`` on every group (false hits only fall as the threshold rises)."""
    check_bound(bound)
    thresholds = curve["thresholds"]
    worst = np.max(np.array([curve["false_hit"][g] for g in curve["false_hit"]]), axis=0)
    ok = np.flatnonzero(worst <= bound)
    if not len(ok):
        return OperatingPoint(NEVER, bound, dict.fromkeys(curve["false_hit"], 0.0), dict.fromkeys(curve["recall"], 0.0))
    i = int(ok[0])
    return OperatingPoint(
        threshold=float(thresholds[i]),
        bound=bound,
        false_hit={g: float(v[i]) for g, v in curve["false_hit"].items()},
        recall={g: float(v[i]) for g, v in curve["recall"].items()},
    )


def load_card(artifact_dir: Path) -> dict[str, Any]:
    card_path = artifact_dir / CARD_FILE
    if not card_path.is_file() or not (artifact_dir / MODEL_FILE).is_file():
        raise FailedPrecondition(
            f"cache verifier artifact not found in {artifact_dir} (needs {MODEL_FILE} and {CARD_FILE}); "
            "run `rationer train cache --out DIR` or leave verifier_artifact empty for the shipped one"
        )
    card: dict[str, Any] = json.loads(card_path.read_text(encoding="utf-8"))
    if card.get("artifact_version") != ARTIFACT_VERSION or tuple(card.get("features", ())) != FEATURE_NAMES:
        raise FailedPrecondition(
            f"{card_path} was built for another verifier (version {card.get('artifact_version')!r}, "
            f"features {card.get('features')}); this code reads version {ARTIFACT_VERSION} with "
            f"{list(FEATURE_NAMES)}: retrain with `rationer train cache`"
        )
    return card


class Verifier:
    """Scores (cached text, new text, cosine) as P(the cached answer is right)."""

    def __init__(
        self, artifact_dir: Path | None = None, *, max_false_hit_rate: float = 0.01, threshold: float | None = None
    ) -> None:
        self.artifact_dir = Path(artifact_dir) if artifact_dir is not None else default_artifact_dir()
        self.card = load_card(self.artifact_dir)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(self.artifact_dir / MODEL_FILE), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._proba = next(o.name for o in self._session.get_outputs() if "prob" in o.name)
        self.point = operating_point(self.card["calibration"], max_false_hit_rate)
        if threshold is not None and not 0.0 < threshold <= NEVER:
            raise InvalidArgument(f"verifier_threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold if threshold is not None else self.point.threshold
        # Cards written before lexical matches existed were calibrated without them.
        self.lexical = bool(self.card.get("lexical_match", False))

    def probabilities(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise InvalidArgument(f"verifier input must be (n, {N_FEATURES}), got {x.shape}")
        out = self._session.run([self._proba], {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float64)[:, 1]

    def score(self, cached: str, new: str, cos: float) -> tuple[float, guard.Verdict]:
        row, verdict, lexical = pair_features(cached, new, cos)
        p = float(self.probabilities(row.reshape(1, -1))[0])
        return (max(p, LEXICAL_SCORE) if lexical and self.lexical else p), verdict

    def accepts(self, score: float) -> bool:
        return self.threshold < NEVER and score >= self.threshold
