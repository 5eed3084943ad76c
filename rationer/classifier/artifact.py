"""The classifier artifact: ``model.onnx`` plus ``model_card.json``.

Serving-safe (json and pathlib only). The shipped default lives inside the
package so a fresh install routes without training.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rationer.errors import FailedPrecondition

ARTIFACT_VERSION = 1
MODEL_FILE = "model.onnx"
CARD_FILE = "model_card.json"


# Labels whose classifier predicts the three outcomes of routing a prompt to
# the strong model: 0 = loses (only weak right), 1 = no change, 2 = gains.
THREE_WAY_LABELS = frozenset({"gain3"})


def raw_score(probs: npt.ArrayLike, label: str) -> npt.NDArray[np.float64]:
    """Ranking score from the classifier's class probabilities.

    Binary labels: P(positive). ``gain3``: P(gain) - P(loss), the expected
    accuracy change from going strong, in [-1, 1].
    """
    p = np.asarray(probs, dtype=np.float64)
    if label in THREE_WAY_LABELS:
        out: npt.NDArray[np.float64] = p[:, 2] - p[:, 0]
        return out
    return p[:, 1]


def calibrate_score(raw: npt.ArrayLike, calibration: dict[str, float] | None) -> npt.NDArray[np.float64]:
    """Platt scaling: sigmoid(a * raw + b) estimates P(needs strong).

    Strictly increasing (a > 0), so it keeps the ranking and every routing
    metric while giving the router a probability it can reason about.
    """
    r = np.asarray(raw, dtype=np.float64)
    if calibration is None:
        return r
    out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-(calibration["a"] * r + calibration["b"])))
    return out


def proba_to_score(
    probs: npt.ArrayLike, label: str, calibration: dict[str, float] | None = None
) -> npt.NDArray[np.float64]:
    return calibrate_score(raw_score(probs, label), calibration)


def default_artifact_dir() -> Path:
    return Path(__file__).resolve().parent / "artifacts" / f"complexity-v{ARTIFACT_VERSION}"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_card(artifact_dir: Path | None = None) -> dict[str, Any]:
    base = Path(artifact_dir) if artifact_dir is not None else default_artifact_dir()
    card_path = base / CARD_FILE
    if not card_path.exists() or not (base / MODEL_FILE).exists():
        raise FailedPrecondition(
            f"classifier artifact not found in {base} (needs {MODEL_FILE} and {CARD_FILE}); "
            "run `rationer train router --out DIR` or omit the artifact option to use the shipped one"
        )
    card: dict[str, Any] = json.loads(card_path.read_text())
    if card.get("artifact_version") != ARTIFACT_VERSION:
        raise FailedPrecondition(
            f"{card_path} has artifact_version {card.get('artifact_version')!r}, this code reads "
            f"version {ARTIFACT_VERSION}; retrain with `rationer train router`"
        )
    return card


def write_card(artifact_dir: Path, card: dict[str, Any]) -> Path:
    path = artifact_dir / CARD_FILE
    path.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    return path
