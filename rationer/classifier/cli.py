"""CLI: ``rationer train router``, ``eval router``, ``calibrate router``, ``bench classifier``.

Heavy imports (pandas, scikit-learn, ONNX Runtime) live inside the command
bodies so ``rationer --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from rationer.errors import RationerError

if TYPE_CHECKING:
    from rationer.cli.main import CliGroups

DATA_DIR_HELP = (
    "Folder holding routellm/mmlu and routellm/gsm8k. Default: ../shared/data relative to the "
    "repo root (then to the current directory)."
)
ARTIFACT_HELP = "Classifier artifact folder (model.onnx + model_card.json). Default: the shipped one."
CACHE_HELP = "Embedding cache folder. Default: ~/.cache/rationer/embeddings."


def _setup_logging() -> None:
    # Entry point: logs go to stderr so that --json leaves exactly one object on stdout.
    from rationer.platform.logging import configure_logging

    configure_logging()


def _fail(exc: RationerError) -> None:
    typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _emit(result: dict[str, Any], as_json: bool, human: str) -> None:
    if as_json:
        typer.echo(json.dumps(result, default=float))
    else:
        typer.echo(human)


def _fmt(x: float | None) -> str:
    return "  n/a " if x is None else f"{x * 100:5.1f}%"


def _table(held_out: dict[str, Any]) -> str:
    lines = []
    for ds, rows in held_out.items():
        lines.append(f"{ds}: {'policy':<11} {'APGR':>6} {'CPT50':>7} {'CPT80':>7} {'95%q':>7}")
        for name, r in rows.items():
            lines.append(
                f"      {name:<11} {r['apgr']:6.3f} {_fmt(r['cpt50'])} {_fmt(r['cpt80'])} "
                f"{_fmt(r['share_for_95pct_quality'])}"
            )
    return "\n".join(lines)


def _target_line(name: str, t: dict[str, Any]) -> str:
    margin = f" (margin {t['margin'] * 100:+.1f} pts)" if "margin" in t else ""
    return f"  {name}: {t['value']:.1%}{margin} {'met' if t['met'] else 'MISSED'}"


def train_router(
    out: Path = typer.Option(Path("artifacts/router"), help="Where to write model.onnx + model_card.json."),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    seed: int = typer.Option(7, help="Seed for the split and every model."),
    cache_dir: Path | None = typer.Option(None, help=CACHE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the model card as one JSON object."),
) -> None:
    """Embed the router data, compare classifiers by held-out APGR, export the best to ONNX."""
    _setup_logging()
    from rationer.classifier.data import resolve_data_dir
    from rationer.classifier.train import prepare
    from rationer.classifier.train import train_router as run
    from rationer.embedding import Embedder

    try:
        prep = prepare(resolve_data_dir(data_dir), Embedder(), seed, cache_dir)
        result = run(prep, out, seed)
    except RationerError as exc:
        _fail(exc)
        return
    card = result.card
    rows = "\n".join(
        f"  {r['name']:<32} val APGR " + " ".join(f"{k} {v:.3f}" for k, v in r["val_apgr"].items())
        for r in card["selection"]["candidates"]
    )
    test = {k[len("test_") :]: v for k, v in card["metrics"].items() if k.startswith("test_")}
    human = (
        f"candidates:\n{rows}\nchosen: {card['classifier']['name']}  threshold {card['threshold']:.4f}\n"
        + "\n".join(
            f"test {k}: APGR {v['apgr']:.3f}, 95% quality at {_fmt(v['share_for_95pct_quality'])} strong"
            for k, v in test.items()
        )
        + f"\nwrote {out}"
    )
    _emit(card, as_json, human)


def eval_router(
    artifact: Path | None = typer.Option(None, help=ARTIFACT_HELP),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    cache_dir: Path | None = typer.Option(None, help=CACHE_HELP),
    plot: Path | None = typer.Option(None, help="Also write the quality-vs-strong-share curve PNG here."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """APGR, CPT(50%), CPT(80%) and strong share for 95% quality vs random/length/oracle."""
    _setup_logging()
    from rationer.classifier.data import resolve_data_dir
    from rationer.classifier.evaluate import run_eval

    try:
        result = run_eval(artifact, resolve_data_dir(data_dir), cache_dir, plot)
    except RationerError as exc:
        _fail(exc)
        return
    human = (
        f"classifier {result['classifier']} (label {result['label']})\nheld-out split:\n"
        f"{_table(result['held_out'])}\nleave-one-dataset-out:\n{_table(result['leave_one_dataset_out'])}\n"
        "targets:\n" + "\n".join(_target_line(k, v) for k, v in result["targets"].items())
    )
    _emit(result, as_json, human)


def calibrate_router(
    prompts: Path = typer.Option(..., help="JSONL ('prompt' or OpenAI 'messages') or one prompt per line."),
    strong_share: float | None = typer.Option(None, help="Share of these prompts to send to the strong tier, 0-1."),
    quality: float | None = typer.Option(
        None,
        help="Instead: keep this fraction of strong-only quality (e.g. 0.95) at the fewest strong calls; "
        "needs weak_ok/strong_ok labels per prompt (a synthesized trace has them).",
    ),
    config: Path = typer.Option(
        Path("router.toml"), help="Router TOML to create or update (key strong_threshold in the router table)."
    ),
    artifact: Path | None = typer.Option(None, help=ARTIFACT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Set the router's strong_threshold: a share of your prompts goes strong, or a quality is kept."""
    _setup_logging()
    from rationer.classifier.calibrate import calibrate

    try:
        result = calibrate(prompts, strong_share, config, artifact, quality=quality)
    except RationerError as exc:
        _fail(exc)
        return
    human = (
        f"strong_threshold = {result['strong_threshold']:.6f} sends "
        f"{result['achieved_strong_share']:.1%} of {result['prompts']} prompts strong"
        + (
            f" at {result['achieved_quality_vs_strong_only']:.1%} of strong-only quality"
            if "achieved_quality_vs_strong_only" in result
            else ""
        )
        + f"; wrote {config}"
    )
    _emit(result, as_json, human)


def bench_classifier(
    artifact: Path | None = typer.Option(None, help=ARTIFACT_HELP),
    iterations: int = typer.Option(2000, min=100, help="Scoring calls to time."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Latency: score given a vector, embed only, embed + score (p50/p99, one thread)."""
    _setup_logging()
    from rationer.cli.bench_import import bench_module

    try:
        r = bench_module("bench.classifier").run_bench(artifact, iterations)
    except RationerError as exc:
        _fail(exc)
        return
    human = (
        f"score given vector: p50 {r['score_with_vector']['p50_us']:.1f} us, "
        f"p99 {r['score_with_vector']['p99_us']:.1f} us; batch-64 {r['score_batch64_per_row_us']:.1f} us/row\n"
        f"embed + score:      p50 {r['embed_and_score']['p50_us'] / 1000:.2f} ms "
        f"(embed alone {r['embed_only']['p50_us'] / 1000:.2f} ms; scoring is "
        f"{r['score_share_of_embed_and_score_p50']:.1%} of it)"
    )
    _emit(r, as_json, human)


def register(groups: CliGroups) -> None:
    """Attach this package's commands to the ``rationer`` CLI groups."""
    groups.train.command("router")(train_router)
    groups.eval.command("router")(eval_router)
    groups.calibrate.command("router")(calibrate_router)
    groups.bench.command("classifier")(bench_classifier)
