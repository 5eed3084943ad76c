"""``rationer report replay``: Markdown report and PNG plots from a replay result.

Plots (matplotlib, Agg backend): cumulative cost over trace time for every
policy, the cost-quality curve with the operating points marked, and the tier
share over trace time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rationer.replay.analysis import __doc__ as METHOD

NANO = 1_000_000_000
LABELS = {
    "gateway": "Rationer (routing + cache)", "all_frontier": "all frontier", "cache_only": "cache only",
    "routing_only": "routing only", "random": "random routing, same strong share",
}  # fmt: skip


def _usd(nano: float) -> str:
    return f"${nano / NANO:,.4f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def plot_all(s: dict[str, Any], out_dir: Path, prefix: str) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"{prefix}_{k}.png" for k in ("cost", "curve", "tiers")}
    hours = s["series"]["bin_s"] / 3600.0
    xs = [hours * (i + 1) for i in range(len(s["series"]["outcomes"]))]

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, per_bin in s["series"]["cost_nano_usd"].items():
        total, cum = 0.0, []
        for v in per_bin:
            total += v / NANO
            cum.append(total)
        ax.plot(xs, cum, label=LABELS[name], lw=2.5 if name == "gateway" else 1.5)
    ax.set(xlabel="trace time (h)", ylabel="cumulative cost (USD)", title="Cost over time by policy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths["cost"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    pts = s["curve"]["points"]
    ax.plot([100 * p["cost_frac"] for p in pts], [100 * p["quality_frac"] for p in pts], label="router score sweep")
    if pts:
        ends = (pts[0], pts[-1])
        ax.plot([100 * p["cost_frac"] for p in ends], [100 * p["quality_frac"] for p in ends], "--", c="grey",
                label="random")  # fmt: skip
    for name, marker in (("routing_only", "o"), ("gateway", "*"), ("cache_only", "s")):
        p = s["policies"][name]
        ax.plot(100 * p["cost_vs_all_frontier"], 100 * p["quality_retained"], marker, ms=11, label=LABELS[name])
    ax.axhline(95, c="red", lw=0.8, ls=":")
    ax.axvline(30, c="red", lw=0.8, ls=":")
    ax.set(xlabel="cost (% of all-frontier)", ylabel="quality (% of all-frontier, labelled)",
           title="Cost-quality trade-off")  # fmt: skip
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(paths["curve"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    outcomes = s["series"]["outcomes"]
    names = sorted({k for b in outcomes for k in b})
    bottom = [0.0] * len(outcomes)
    for name in names:
        share = [b.get(name, 0) / max(sum(b.values()), 1) for b in outcomes]
        ax.bar(xs, share, width=hours * 0.9, bottom=bottom, label=name, align="edge")
        bottom = [a + b for a, b in zip(bottom, share, strict=True)]
    ax.set(xlabel="trace time (h)", ylabel="share of requests", title="Tier share over time")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(paths["tiers"], dpi=110)
    plt.close(fig)
    return paths


def summary_rows(s: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    gw = s["policies"]["gateway"]["cost_nano_usd"]
    rows = []
    for name, p in s["policies"].items():
        saving = (
            "" if name == "gateway" else f"{100 * (1 - gw / p['cost_nano_usd']):.1f}%" if p["cost_nano_usd"] else ""
        )
        rows.append((LABELS[name], _usd(p["cost_nano_usd"]), _pct(p["cost_vs_all_frontier"]),
                     _pct(p["quality_retained"]), saving))  # fmt: skip
    return rows


def _table(head: list[str], rows: list[tuple[Any, ...]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return [*out, ""]


def markdown(s: dict[str, Any], plots: dict[str, Path], md_dir: Path) -> str:
    c, lat, run = s["cache"], s["latency"], s["run"]
    rel = {k: os.path.relpath(Path(p).resolve(), md_dir.resolve()) for k, p in plots.items()}
    lines = [f"# Replay report: {s['requests']} requests", "",
             f"Gateway `{run.get('address')}`, speed {run.get('speed')}, concurrency {run.get('concurrency')}, "
             f"wall {run.get('wall_s', 0):.1f} s ({run.get('served_rps', 0):.2f} req/s). Outcomes: {s['status']}. "
             f"{s['labelled']} lines carry correctness labels. Reference tier: `{s['reference_tier']}`.", "",
             "## Cost and quality against the baselines", ""]  # fmt: skip
    lines += _table(["policy", "cost", "cost vs all-frontier", "quality retained", "Rationer saves"], summary_rows(s))
    lines += [f"Routing sends {_pct(s['routing_strong_share'])} of lines to a frontier tier.", "",
              f"![cost-quality]({rel['curve']})", "", f"![cost over time]({rel['cost']})", "",
              "## By team", ""]  # fmt: skip
    team_rows = [(t, r["requests"], _usd(r["gateway_cost_nano_usd"]), _usd(r["all_frontier_cost_nano_usd"]),
                  f"{r['savings_vs_all_frontier_pct']:.1f}%", f"{r['savings_vs_cache_only_pct']:.1f}%",
                  f"{r['savings_vs_routing_only_pct']:.1f}%") for t, r in s["by_team"].items()]  # fmt: skip
    lines += _table(["team", "requests", "cost", "all-frontier", "saves vs frontier", "vs cache only",
                     "vs routing only"], team_rows)  # fmt: skip
    lines += ["## Cache", "", f"Hit rate {_pct(c['hit_rate'])} ({c['hits']} hits); wrong hits (a different "
              f"prompt's answer, from the labelled repeats): {c['wrong_hits']} ({_pct(c['wrong_hit_rate'])} of hits; "
              f"{c['ambiguous_right_hits']} right hits share their text with another prompt's answer). "
              f"Repeats in the trace: {c['repeats']}, {_pct(c['repeat_hit_rate'])} of them hit.", ""]  # fmt: skip
    lines += _table(["variant", "requests", "hits", "wrong hits"],
                    [(k, v.get("requests", 0), v.get("hits", 0), v.get("wrong_hits", 0))
                     for k, v in c["by_variant"].items()])  # fmt: skip
    lines += ["## Tier mix", "", f"![tier share]({rel['tiers']})", ""]
    lines += _table(["outcome", "requests"], sorted(s["tier_mix"].items()))
    lines += ["## Latency (ms)", ""]
    lat_rows = [(k, f"{v['p50']:.1f}", f"{v['p95']:.1f}", f"{v['p99']:.1f}", v["n"]) for k, v in lat.items()]
    lines += _table(["", "p50", "p95", "p99", "n"], lat_rows)
    lines += ["## Budget events per team", ""]
    lines += [
        "Soft alerts and refused holds come from the ledger's events (refused holds include those a "
        "downgrade then rescued); downgrades and denials are what the router answered.",
        "",
    ]
    lines += _table(["team", "soft alerts", "refused holds", "downgrades", "denials"],
                    [(t, v["soft_alerts"], v["refused_holds"], v["downgrades"], v["denials"])
                     for t, v in s["budget_events"].items()])  # fmt: skip
    lines += ["Over time (trace hours; only periods with events):", ""]
    lines += _table(["team", "trace time (h)", "soft alerts", "refused holds", "downgrades", "denials"],
                    _event_timeline(s["series"]))  # fmt: skip
    lines += [*_checks(s), "## Method", "", METHOD or "", ""]
    return "\n".join(lines)


def _event_timeline(series: dict[str, Any]) -> list[tuple[Any, ...]]:
    hours = float(series["bin_s"]) / 3600
    rows: list[tuple[Any, ...]] = []
    for team, bins in series["budget_events"].items():
        for i, counts in enumerate(bins):
            if any(counts.values()):
                keys = ("soft_alerts", "refused_holds", "downgrades", "denials")
                rows.append((team, f"{i * hours:.1f}-{(i + 1) * hours:.1f}", *(counts.get(k, 0) for k in keys)))
    return rows


def _checks(s: dict[str, Any]) -> list[str]:
    out = ["## Checks", ""]
    lc = s.get("ledger_check")
    if lc:
        out.append(f"Ledger Usage: {lc['ledger_requests']} requests, {_usd(lc['ledger_cost_nano_usd'])}; replay: "
                   f"{lc['replay_requests']} requests, {_usd(lc['replay_cost_nano_usd'])} -> "
                   f"{'match' if lc['match'] else 'MISMATCH'} (per team: {lc['teams_match']}).")  # fmt: skip
    dc = s.get("driver_check")
    if dc:
        ratio = f"{dc['ratio']:.1f}x" if dc.get("ratio") else "n/a"
        out.append(f"Driver capacity against a no-op router: {dc['rps']:.0f} req/s vs the gateway's "
                   f"{dc['gateway_rps']:.2f} req/s ({ratio}).")  # fmt: skip
    return [*out, ""]


def write_report(s: dict[str, Any], out: Path, plot_dir: Path | None = None, prefix: str = "replay") -> dict[str, Any]:
    plots = plot_all(s, plot_dir or out.parent, prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(s, plots, out.parent))
    return {"report": str(out), "plots": {k: str(v) for k, v in plots.items()}}
