"""Routing metrics as RouteLLM defines them (Ong et al., 2024, section 5).

A router scores every prompt; a threshold sends the highest-scoring share
``c`` of prompts to the strong model. The routed policy's quality at ``c`` is
the mean over prompts of (strong correct if routed strong else weak correct).

* PGR(c)  = (quality(c) - quality(weak)) / (quality(strong) - quality(weak))
* APGR    = area under PGR over c in [0, 1] (computed exactly on the piecewise
  linear curve; RouteLLM approximates it with 10 evenly spaced points)
* CPT(x)  = the smallest strong share c with PGR(c) >= x
* share95 = the smallest c with quality(c) >= 0.95 * quality(strong only)

Tied scores are routed as a group in random order, so within a tie group the
curve is the straight line between its ends (the expectation over tie-breaks);
a constant score therefore gives exactly the random-routing diagonal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from rationer.classifier import candidates as cands

if TYPE_CHECKING:
    import pandas as pd

FloatArray = npt.NDArray[np.float64]


class PreparedData(Protocol):
    """What the per-split reports read of ``train.Prepared`` (so this module needs no ``train``)."""

    @property
    def frame(self) -> pd.DataFrame: ...
    def inputs(self, use_text_features: bool, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]: ...
    def mask(self, part: str, dataset: str | None = None) -> npt.NDArray[np.bool_]: ...
    def datasets(self, part: str) -> list[str]: ...


P = TypeVar("P", bound=PreparedData)
# train.fit: a candidate refitted on the rows of a mask (leave-one-dataset-out).
Fit = Callable[[cands.Candidate, P, npt.NDArray[np.bool_]], Any]


@dataclass(frozen=True)
class Curve:
    """Quality at the strong-call shares where the curve bends (0 and 1 included)."""

    share: FloatArray
    quality: FloatArray
    quality_weak: float
    quality_strong: float

    def pgr(self) -> FloatArray:
        gap = self.quality_strong - self.quality_weak
        if gap == 0:
            return np.zeros_like(self.quality)
        out: FloatArray = (self.quality - self.quality_weak) / gap
        return out

    def quality_at(self, share: float) -> float:
        return float(np.interp(share, self.share, self.quality))


def routing_curve(scores: npt.ArrayLike, weak: npt.ArrayLike, strong: npt.ArrayLike) -> Curve:
    """The quality-vs-strong-share curve of routing by descending ``scores``."""
    s = np.asarray(scores, dtype=np.float64)
    w = np.asarray(weak, dtype=np.float64)
    st = np.asarray(strong, dtype=np.float64)
    n = len(s)
    if n == 0 or len(w) != n or len(st) != n:
        raise ValueError("scores, weak and strong must be non-empty and the same length")
    order = np.argsort(-s, kind="stable")
    gain = (st - w)[order]
    cum = np.concatenate([[0.0], np.cumsum(gain)])
    sorted_scores = s[order]
    # Curve points only at tie-group boundaries: linear in between.
    ends = np.flatnonzero(np.diff(sorted_scores) != 0) + 1
    ks = np.concatenate([[0], ends, [n]])
    return Curve(
        share=ks / n,
        quality=(w.sum() + cum[ks]) / n,
        quality_weak=float(w.mean()),
        quality_strong=float(st.mean()),
    )


def apgr(curve: Curve) -> float:
    return float(np.trapezoid(curve.pgr(), curve.share))


def _first_crossing(share: FloatArray, values: FloatArray, target: float) -> float | None:
    """Smallest x where the piecewise-linear (share, values) reaches ``target``."""
    hit = np.flatnonzero(values >= target - 1e-12)
    if len(hit) == 0:
        return None
    i = int(hit[0])
    if i == 0:
        return float(share[0])
    x0, x1, y0, y1 = share[i - 1], share[i], values[i - 1], values[i]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))


def cpt(curve: Curve, pgr_target: float) -> float | None:
    """Strong-call share needed for PGR >= ``pgr_target`` (e.g. 0.5 for CPT(50%))."""
    return _first_crossing(curve.share, curve.pgr(), pgr_target)


def share_for_quality(curve: Curve, fraction_of_strong: float = 0.95) -> float | None:
    """Strong-call share needed for quality >= ``fraction_of_strong`` x strong-only quality."""
    return _first_crossing(curve.share, curve.quality, fraction_of_strong * curve.quality_strong)


def summarize(curve: Curve) -> dict[str, float | None]:
    return {
        "apgr": apgr(curve),
        "cpt50": cpt(curve, 0.5),
        "cpt80": cpt(curve, 0.8),
        "share_for_95pct_quality": share_for_quality(curve, 0.95),
        "quality_weak": curve.quality_weak,
        "quality_strong": curve.quality_strong,
    }


def random_scores(n: int) -> FloatArray:
    """Constant scores: with tie-averaging this is exactly the expected random router."""
    return np.zeros(n, dtype=np.float64)


def oracle_scores(weak: npt.ArrayLike, strong: npt.ArrayLike) -> FloatArray:
    """Strong-only-correct first, weak-only-correct last: the best possible order."""
    return np.asarray(strong, dtype=np.float64) - np.asarray(weak, dtype=np.float64)


def report(scores: npt.ArrayLike, sub: pd.DataFrame) -> dict[str, Any]:
    curve = routing_curve(scores, sub["weak"], sub["strong"])
    return {"n": len(sub), **summarize(curve)}


def baseline_scores(sub: pd.DataFrame) -> dict[str, npt.NDArray[np.float64]]:
    return {
        "random": random_scores(len(sub)),
        "length": sub["prompt"].str.len().to_numpy(dtype=np.float64),
        "oracle": oracle_scores(sub["weak"], sub["strong"]),
    }


def split_metrics(prep: P, model: Any, cand: cands.Candidate, fit: Fit[P]) -> dict[str, Any]:
    """The chosen model on val and test per dataset, plus leave-one-dataset-out (refitted by ``fit``)."""
    out: dict[str, Any] = {}
    for part in ("test", "val"):
        for ds in prep.datasets(part):
            m = prep.mask(part, ds)
            scores = cands.route_score(model, prep.inputs(cand.use_text_features, m), cand.label)
            out[f"{part}_{ds}"] = report(scores, prep.frame[m])
    out["leave_one_dataset_out"] = leave_one_dataset_out(prep, cand, fit)
    return out


def lodo_train_mask(prep: PreparedData, held: str) -> npt.NDArray[np.bool_]:
    """Training rows without any row of ``held`` (nor MMLU-Pro's rewritten MMLU
    questions when ``held`` is MMLU: they are the same source)."""
    f = prep.frame
    m = prep.mask("train") & (f["dataset"] != held).to_numpy()
    if held == "mmlu" and "mmlu_subject" in f:
        m &= (f["mmlu_subject"].fillna("") == "").to_numpy() | (f["dataset"] == "mmlu").to_numpy()
    return np.asarray(m, dtype=bool)


def leave_one_dataset_out(prep: P, cand: cands.Candidate, fit: Fit[P]) -> dict[str, Any]:
    """Per trained-on dataset: the same configuration refitted without it, tested on its test part."""
    out: dict[str, Any] = {}
    for held in prep.datasets("train"):
        train = lodo_train_mask(prep, held)
        if len(prep.datasets("train")) < 2 or not train.any():
            continue
        model = fit(cand, prep, train)
        m = prep.mask("test", held)
        sub = prep.frame[m]
        scores = cands.route_score(model, prep.inputs(cand.use_text_features, m), cand.label)
        out[held] = {"classifier": report(scores, sub), **{n: report(s, sub) for n, s in baseline_scores(sub).items()}}
    return out
