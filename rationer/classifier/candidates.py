"""Candidate classifiers compared by held-out APGR, and their ONNX export.

Training-only (scikit-learn, skl2onnx). Every candidate is a scikit-learn
pipeline whose input row is the prompt embedding, optionally followed by the
cheap text features, so one ONNX signature serves them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rationer.classifier.artifact import proba_to_score

# The two label formulations compared (see docs/classifier.md).
LABELS = {
    # The natural label: routing this prompt to the strong model changes the
    # outcome from wrong to right.
    "needs_strong": "weak model wrong and strong model right",
    # A denser label: any prompt the weak model fails. Prompts both models fail
    # rank high too, which costs strong calls without gain, but it has ~1.5x
    # the positives and tracks difficulty more directly.
    "weak_fails": "weak model wrong",
    # Three classes by what going strong changes: loses / nothing / gains.
    # Unlike needs_strong it also learns which prompts the strong model gets
    # wrong where the weak one is right, and scores the expected gain.
    "gain3": "strong correct minus weak correct, as 3 classes (-1, 0, +1)",
}


@dataclass(frozen=True)
class Candidate:
    name: str
    kind: str
    label: str
    use_text_features: bool
    params: dict[str, Any]
    build: Callable[[], Any]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "label": self.label,
            "use_text_features": self.use_text_features,
            "params": self.params,
        }


def label_vector(weak: npt.ArrayLike, strong: npt.ArrayLike, label: str) -> npt.NDArray[np.int64]:
    w = np.asarray(weak, dtype=bool)
    s = np.asarray(strong, dtype=bool)
    out: npt.NDArray[np.int64]
    if label == "needs_strong":
        out = (~w & s).astype(np.int64)
        return out
    if label == "weak_fails":
        out = (~w).astype(np.int64)
        return out
    if label == "gain3":
        out = s.astype(np.int64) - w.astype(np.int64) + 1
        return out
    raise ValueError(f"unknown label {label!r}; choose one of {sorted(LABELS)}")


def _logreg(c: float, seed: int) -> Callable[[], Any]:
    def build() -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))

    return build


def _mlp(hidden: int, alpha: float, seed: int) -> Callable[[], Any]:
    def build() -> Any:
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(
            StandardScaler(),
            MLPClassifier(
                hidden_layer_sizes=(hidden,),
                alpha=alpha,
                early_stopping=True,
                validation_fraction=0.1,
                n_iter_no_change=8,
                max_iter=200,
                random_state=seed,
            ),
        )

    return build


def _knn(k: int) -> Callable[[], Any]:
    def build() -> Any:
        from sklearn.neighbors import KNeighborsClassifier

        # Unit vectors: Euclidean order equals cosine order.
        return KNeighborsClassifier(n_neighbors=k, weights="uniform", algorithm="brute")

    return build


def mf_candidate(
    rank: int, l2: float, aux: tuple[str, ...], seed: int, feats: bool = True, dataset_bias: bool = False
) -> Candidate:
    """Matrix factorisation over prompts x models (``rationer.classifier.mf``); fitted by ``train.fit``.

    ``dataset_bias``: one bias per data set and model while training (see ``mf.fit_mf``).
    """
    tag = (f"+{len(aux)}aux" if aux else "") + ("+dsbias" if dataset_bias else "")
    params = {"rank": rank, "l2": l2, "aux": list(aux), "seed": seed, "dataset_bias": dataset_bias}
    return Candidate(
        f"mf r={rank} l2={l2}{tag}{'+text' if feats else ''}", "mf", "gain3", feats, params, lambda: params
    )


PRO_AUX = ("llama_3_1_70b", "llama_3_1_8b")


def default_candidates(seed: int) -> list[Candidate]:
    """Simplest first: on equal validation APGR the earlier one wins."""
    out: list[Candidate] = []
    for label in ("needs_strong", "gain3"):
        for feats in (False, True):
            tag = f"{label}{'+text' if feats else ''}"
            for c in (0.001, 0.01):
                out.append(Candidate(f"logreg C={c} {tag}", "logreg", label, feats, {"C": c}, _logreg(c, seed)))
        out.append(
            Candidate(f"mlp h=64 {label}+text", "mlp", label, True, {"hidden": 64, "alpha": 1.0}, _mlp(64, 1.0, seed))
        )
        for k in (50, 100):
            out.append(Candidate(f"knn k={k} {label}", "knn", label, False, {"k": k}, _knn(k)))
    out.append(Candidate("logreg C=0.01 weak_fails", "logreg", "weak_fails", False, {"C": 0.01}, _logreg(0.01, seed)))
    # Matrix factorisation last: on a tie the simpler heads above win. Without
    # aux it learns from the strong/weak pair only; with aux also from the
    # MMLU-Pro table's two Llama models (NaN, so ignored, on other rows).
    out.append(mf_candidate(16, 1e-3, (), seed))
    out.append(mf_candidate(16, 1e-3, PRO_AUX, seed))
    out.append(mf_candidate(32, 1e-3, PRO_AUX, seed))
    out.append(mf_candidate(16, 1e-3, (), seed, dataset_bias=True))
    out.append(mf_candidate(16, 1e-3, PRO_AUX, seed, dataset_bias=True))
    out.append(mf_candidate(16, 1e-2, PRO_AUX, seed, dataset_bias=True))
    # The same heads fitted on the RouteLLM tables only: pooling MMLU-Pro
    # (another strong model, 10 options) measurably hurt MMLU and GSM8K
    # validation APGR, so the training set is itself a choice made on validation.
    for c in (0.001, 0.01):
        out.append(_restricted(Candidate(f"logreg C={c} gain3+text", "logreg", "gain3", True, {"C": c},
                                         _logreg(c, seed)), ROUTELLM))  # fmt: skip
    out.append(_restricted(Candidate("mlp h=64 gain3+text", "mlp", "gain3", True, {"hidden": 64, "alpha": 1.0},
                                     _mlp(64, 1.0, seed)), ROUTELLM))  # fmt: skip
    out.append(_restricted(mf_candidate(16, 1e-3, (), seed), ROUTELLM))
    return out


ROUTELLM = ("gsm8k", "mmlu")


def _restricted(cand: Candidate, datasets: tuple[str, ...]) -> Candidate:
    """``cand`` fitted only on the training rows of ``datasets``."""
    params = {**cand.params, "train_datasets": list(datasets)}
    build = cand.build if cand.kind != "mf" else (lambda: params)
    return Candidate(
        f"{cand.name} [{'+'.join(datasets)}]", cand.kind, cand.label, cand.use_text_features, params, build
    )


def route_score(model: Any, x: npt.NDArray[np.float32], label: str) -> npt.NDArray[np.float64]:
    return proba_to_score(model.predict_proba(x), label)


def export_onnx(model: Any, dim: int) -> tuple[bytes, str]:
    """Serialise ``model`` to ONNX; returns (bytes, name of the probability output)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    final = model.steps[-1][1] if hasattr(model, "steps") else model
    onx = to_onnx(
        model,
        initial_types=[("X", FloatTensorType([None, dim]))],
        options={id(final): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    names = [o.name for o in onx.graph.output]
    prob = next(n for n in names if "prob" in n)
    return onx.SerializeToString(), prob
