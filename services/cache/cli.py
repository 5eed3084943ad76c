"""CLI commands of the cache service: serve, bench, eval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rationer.cli.main import CliGroups


def serve_cache(
    config: Path | None = typer.Option(None, "--config", help="TOML file with a [cache] section"),
) -> None:
    """Run the semantic cache service."""
    from services.cache.main import main

    main(config)


def bench_cache(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    quick: bool = typer.Option(False, "--quick", help="smaller sizes (10k only), for smoke runs"),
) -> None:
    """Embedding latency, micro-batching gain, flat vs HNSW search, gRPC Lookup."""
    from rationer.cli.bench_import import bench_module
    from rationer.platform.logging import configure_logging

    bench = bench_module("bench.cache")

    configure_logging(level="WARNING")  # logs go to stderr; stdout is the report
    report = bench.run(quick=quick)
    typer.echo(json.dumps(report) if as_json else bench.format_report(report))


def bench_cache_backend(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    entries: int = typer.Option(100_000, "--entries", min=100, help="entries per tenant"),
    tenants: int = typer.Option(2, "--tenants", min=1, help="tenants sharing the backend"),
    queries: int = typer.Option(500, "--queries", min=10, help="timed lookups per tenant"),
    pg_dsn: str = typer.Option("", "--pg-dsn", help="a PostgreSQL with pgvector (default: start one in a temp dir)"),
    milvus: bool = typer.Option(False, "--milvus", help="also measure Milvus Lite (pip install -e .[milvus])"),
) -> None:
    """Shared pgvector backend vs embedded FAISS: lookup p50/p99, recall@1, store throughput."""
    from rationer.cli.bench_import import bench_module
    from rationer.platform.logging import configure_logging

    bench = bench_module("bench.cache_backend")
    configure_logging(level="WARNING")
    report = bench.run(entries=entries, tenants=tenants, queries=queries, pg_dsn=pg_dsn or None, milvus=milvus)
    typer.echo(json.dumps(report) if as_json else bench.format_report(report))


def eval_cache(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    plot: Path | None = typer.Option(None, "--plot", help="write the recall / false-hit sweep as a PNG"),
    bound: float = typer.Option(0.01, "--max-false-hit-rate", help="the operator's error bound"),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="holds msrp.jsonl and sick.jsonl (default ../shared/data/paraphrase)"
    ),
    only: list[str] = typer.Option([], "--set", help="only these data sets (fow-cache, msrp, sick)"),
    conversations: bool = typer.Option(
        True, "--conversations/--no-conversations", help="fow-cache's 240 conversation pairs (held out)"
    ),
    embed_cache: Path | None = typer.Option(None, "--embed-cache", help="folder for cached embeddings"),
    quantized: bool = typer.Option(False, "--int8", help="the int8 embedder (the verifier was calibrated on fp32)"),
    leave_one_out: bool = typer.Option(
        False, "--leave-one-out", help="also refit/recalibrate without each data set (needs the train extra)"
    ),
) -> None:
    """Recall and false hits on fow-cache, MSRP test and SICK test through the real cache."""
    import asyncio

    from rationer.platform.logging import configure_logging
    from services.cache import evaluate, evaluate_report
    from services.cache.pairsets import DATASETS

    configure_logging(level="WARNING")  # keep stdout to the one report
    from rationer.embedding import Embedder

    report = asyncio.run(evaluate.evaluate(
        embedder=Embedder(quantized=quantized), data_dir=data_dir, max_false_hit_rate=bound,
        sets=tuple(only) or DATASETS, with_conversations=conversations, cache_dir=embed_cache))  # fmt: skip
    if leave_one_out:
        from services.cache.verifier_train import leave_one_out as loo

        report["leave_one_out"] = loo(Embedder(), data_dir, embed_cache, bound)
    if plot is not None:
        evaluate_report.plot(report, plot)
    typer.echo(json.dumps(report) if as_json else evaluate_report.format_report(report))


def train_cache(
    out: Path = typer.Option(..., "--out", help="artifact folder to write (verifier.onnx + card)"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="holds msrp.jsonl and sick.jsonl"),
    embed_cache: Path | None = typer.Option(None, "--embed-cache", help="folder for cached embeddings"),
) -> None:
    """Fit the cache verifier on fow-cache, calibrate on MSRP/SICK train splits, export ONNX."""
    from rationer.embedding import Embedder
    from rationer.platform.logging import configure_logging
    from services.cache import verifier, verifier_train

    configure_logging(level="WARNING")
    card = verifier_train.train(out, Embedder(), data_dir, embed_cache)
    point = verifier.operating_point(card["calibration"], 0.01)
    typer.echo(f"wrote {out}; at max_false_hit_rate 0.01 the threshold is {point.threshold:.4f}")


def calibrate_cache(
    pairs: Path = typer.Option(..., "--pairs", help="JSONL: a, b, same_answer (your own labelled pairs)"),
    config: Path = typer.Option(Path("rationer.toml"), "--config", help="gateway config to update"),
    bound: float | None = typer.Option(
        None, "--max-false-hit-rate", help="error bound (default: the config's, else 0.01)"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the result, do not write the config"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Pick the verifier threshold that keeps false hits on your pairs within the bound."""
    from rationer.platform.logging import configure_logging
    from services.cache import calibrate

    configure_logging(level="WARNING")
    result = calibrate.run(pairs, config, bound, write=not dry_run)
    typer.echo(json.dumps(result) if as_json else calibrate.format_result(result))


def register(groups: CliGroups) -> None:
    """Attach this service's commands to the ``rationer`` CLI groups."""
    groups.serve.command("cache")(serve_cache)
    groups.bench.command("cache")(bench_cache)
    groups.bench.command("cache-backend")(bench_cache_backend)
    groups.eval.command("cache")(eval_cache)
    groups.train.command("cache")(train_cache)
    groups.calibrate.command("cache")(calibrate_cache)
