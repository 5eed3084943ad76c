"""Text table and PNG sweep for ``rationer eval cache``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _cell(r: dict[str, Any]) -> str:
    fh = "  ".join(f"{g.split('/')[-1]} {v:5.1%}" for g, v in r["false_hit"].items())
    return f"recall {r['recall']:6.1%} | false hits {fh}"


def format_report(report: dict[str, Any]) -> str:
    p = report["calibration_point"]
    lines = [
        f"verifier at max_false_hit_rate {report['max_false_hit_rate']}: threshold {report['threshold']:.4f} "
        f"(embedder {report['embedder']})",
        "  on the calibration splits: " + ", ".join(f"{g} {v:.2%}" for g, v in p["false_hit"].items()),
    ]
    for ds, r in report["sets"].items():
        traps = ", ".join(f"{n} {g}" for g, n in r["n_traps"].items())
        lines += ["", f"{ds} ({r['split']}): {r['n_should_hit']} should-hit, traps {traps}"]
        for name in ("verifier", "guard", "cosine_0.90", "cosine_0.95"):
            lines.append(f"  {name:<12} {_cell(r[name])}")
        lines.append(
            f"  plain cosine at the verifier's false-hit rate: recall {r['cosine_at_same_false_hit']:.1%}"
            + (f"   (cache vs offline scores disagree on {r['mismatches']} pairs)" if r["mismatches"] else "")
        )
        lines.append("  sweep  bound  threshold  recall  false hits                 cosine recall at that rate")
        for row in r["sweep"]:
            fh = " ".join(f"{v:5.1%}" for v in row["false_hit"].values())
            lines.append(f"        {row['bound']:6.2%}  {row['threshold']:.4f}   {row['recall']:6.1%}  {fh:<26} "
                         f"{row['cosine_same_false_hit']:6.1%}")  # fmt: skip
    lines += ["", "targets at the default bound:"]
    for t in report["targets"]:
        mark = "met" if t["met"] else f"MISSED by {100 * t['miss_by']:.2f} points"
        lines.append(f"  {t['data']:<10} {t['metric']:<30} {t['value']:+.3%} (target {t['target']})  {mark}")
    if not all(t["met"] for t in report["targets"]):
        lines.append("  why each miss happens: docs/cache.md, \"Results at the default bound\"")
    if "leave_one_out" in report:
        lines += ["", "leave one data set out (fit and calibration without it; scored on its test split):"]
        for ds, r in report["leave_one_out"].items():
            lines.append(f"  {ds:<10} fit on {r['fitted_on']}, threshold {r['threshold']:.4f}: {_cell(r)}; "
                         f"plain cosine at that rate {r['cosine_at_same_false_hit']:.1%}")  # fmt: skip
    if report.get("conversations"):
        lines += ["", "fow-cache conversations (240 pairs, all held out; no target in the issue, reported):"]
    for name, r in report.get("conversations", {}).items():
        traps = sum(r["n_traps"].values())
        lines.append(f"  {name} key ({r['n_should_hit']} should-hit, {traps} traps):")
        for kind in ("verifier", "guard", "cosine_0.95"):
            lines.append(f"    {kind:<12} {_cell(r[kind])}")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Recall against false-hit rate per data set: the verifier's sweep, the
    guard's and the cosine baselines' single points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = report["sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4), squeeze=False)
    for ax, (ds, r) in zip(axes[0], sets.items(), strict=True):
        xs = [row["false_hit_all"] for row in r["sweep"]]
        ax.plot(xs, [row["recall"] for row in r["sweep"]], "o-", label="verifier (bound sweep)")
        ax.plot(xs, [row["cosine_same_false_hit"] for row in r["sweep"]], "s--", label="plain cosine, same rate")
        for name, marker in (("guard", "x"), ("cosine_0.90", "^"), ("cosine_0.95", "v")):
            ax.plot([r[name]["false_hit_all"]], [r[name]["recall"]], marker, markersize=9, label=name)
        ax.axvline(report["max_false_hit_rate"], color="grey", lw=0.8, ls=":")
        ax.set_title(f"{ds} ({r['split']})")
        ax.set_xlabel("false hits (share of traps served)")
        ax.set_ylabel("recall (should-hit served)")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
