"""``rationer eval router``: the classifier against baselines on the held-out split.

Scores come from the exported ONNX model through the serving scorer, so the
numbers describe what the router actually runs. Baselines on the same rows:
random routing, prompt length (longer goes strong) and the oracle.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rationer.classifier import candidates as cands
from rationer.classifier import metrics
from rationer.classifier.artifact import default_artifact_dir, load_card
from rationer.errors import FailedPrecondition

if TYPE_CHECKING:
    import pandas as pd

    from rationer.classifier.embed_cache import SupportsEmbed

TITLES = {
    "mmlu": "MMLU, held-out subjects",
    "gsm8k": "GSM8K, held-out 30%",
    "mmlu_pro": "MMLU-Pro, held-out categories",
    "alpaca_eval": "AlpacaEval chat (never trained on)",
    "arc": "ARC-Challenge (never trained on)",
    "mbpp": "MBPP code (never trained on)",
    "winogrande": "Winogrande (never trained on)",
}


def full_data_reference(frame: pd.DataFrame) -> dict[str, Any]:
    """Random and oracle on all rows: checks the metric code against published numbers."""
    out = {}
    for ds in dict.fromkeys(frame["dataset"]):
        sub = frame[frame["dataset"] == ds]
        out[ds] = {name: metrics.report(s, sub) for name, s in metrics.baseline_scores(sub).items() if name != "length"}
    return out


def candidate_from_card(card: dict[str, Any]) -> cands.Candidate:
    name = card["classifier"]["name"]
    for cand in cands.default_candidates(int(card["seed"])):
        if cand.name == name:
            return cand
    raise FailedPrecondition(f"artifact names classifier {name!r}, which this code no longer defines")


def targets(held_out: dict[str, Any], lodo: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with its measured value (strong shares for 95% quality)."""
    out: dict[str, Any] = {}

    def share(rows: dict[str, Any], name: str) -> float:
        v = rows[name]["share_for_95pct_quality"]
        return 1.0 if v is None else float(v)

    for ds, limit in (("mmlu", 0.45), ("gsm8k", 0.55)):
        if ds in held_out:
            got = share(held_out[ds], "classifier")
            out[f"{ds}_share_for_95pct_at_most_{limit:.2f}"] = {"value": got, "met": got <= limit}
    for ds in ("mmlu_pro", "alpaca_eval"):
        if ds in held_out:
            rows = held_out[ds]
            got = share(rows, "classifier")
            margin = min(share(rows, "length"), share(rows, "random")) - got
            out[f"{ds}_10pts_better_than_length_and_random"] = {"value": got, "margin": margin, "met": margin >= 0.10}
    for ds, rows in lodo.items():
        got = share(rows, "classifier")
        margin = share(rows, "length") - got
        out[f"lodo_{ds}_better_than_length"] = {"value": got, "margin": margin, "met": margin > 0}
    return out


def run_eval(
    artifact_dir: Path | None,
    data_dir: Path,
    cache_dir: Path | None,
    plot_path: Path | None,
    embedder: SupportsEmbed | None = None,
) -> dict[str, Any]:
    """Held-out rows only: every data set's test part, scored through the served ONNX model."""
    from rationer.classifier.scorer import ComplexityScorer
    from rationer.classifier.split2 import GroupSplit
    from rationer.classifier.train import fit, prepare

    base = artifact_dir if artifact_dir is not None else default_artifact_dir()
    card = load_card(base)
    scorer = ComplexityScorer(base)
    if embedder is None:
        from rationer.embedding import Embedder

        embedder = Embedder()
    if embedder.identity != card["embedder"]:
        raise FailedPrecondition(
            f"installed embedder {embedder.identity} differs from the artifact's {card['embedder']}; "
            "retrain with `rationer train router`"
        )
    prep = prepare(data_dir, embedder, int(card["seed"]), cache_dir, split=GroupSplit.from_dict(card["split"]))
    held_out: dict[str, Any] = {}
    curves: dict[str, dict[str, metrics.Curve]] = {}
    for ds in prep.datasets("test"):
        m = prep.mask("test", ds)
        sub = prep.frame[m]
        served = scorer.score_batch(prep.vectors[m], sub["prompt"].tolist())
        policies = {"classifier": served.astype(np.float64)}
        policies.update(metrics.baseline_scores(sub))
        held_out[ds] = {name: metrics.report(s, sub) for name, s in policies.items()}
        curves[ds] = {name: metrics.routing_curve(s, sub["weak"], sub["strong"]) for name, s in policies.items()}
    lodo = metrics.leave_one_dataset_out(prep, candidate_from_card(card), fit)
    result = {
        "artifact": str(base),
        "classifier": card["classifier"]["name"],
        "label": card["label"]["name"],
        "embedder": card["embedder"],
        "split": {**card["split"], "rows": card["data"]["rows"]},
        "held_out": held_out,
        "leave_one_dataset_out": lodo,
        "targets": targets(held_out, lodo),
        "full_data_reference": full_data_reference(prep.frame),
        "threshold": card["threshold"],
    }
    if plot_path is not None:
        plot_curves(curves, plot_path)
        result["plot"] = str(plot_path)
    return result


def plot_curves(curves: dict[str, dict[str, metrics.Curve]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(curves))
    rows = -(-len(curves) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    for ax in axes.ravel()[len(curves) :]:
        ax.set_visible(False)
    styles = {"classifier": "-", "length": "--", "random": ":", "oracle": "-."}
    for ax, (ds, by_name) in zip(axes.ravel(), curves.items(), strict=False):
        for name, curve in by_name.items():
            ax.plot(curve.share * 100, curve.quality * 100, styles.get(name, "-"), label=name)
        target = 0.95 * next(iter(by_name.values())).quality_strong * 100
        ax.axhline(target, color="grey", lw=0.8)
        ax.text(1, target + 0.3, "95% of strong-only", color="grey", fontsize=8)
        ax.set_title(TITLES.get(ds, ds), fontsize=10)
        ax.set_xlabel("strong-model calls (%)")
        ax.set_ylabel("quality (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
