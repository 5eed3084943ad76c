"""CLI commands of the cache service: serve, bench, eval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rationer.cli.main import CliGroups


def register(groups: CliGroups) -> None:
    """Attach this service's commands to the ``rationer`` CLI groups."""

    @groups.serve.command("cache")
    def serve_cache(
        config: Path | None = typer.Option(None, "--config", help="TOML file with a [cache] section"),
    ) -> None:
        """Run the semantic cache service."""
        from services.cache.main import main

        main(config)

    @groups.bench.command("cache")
    def bench_cache(
        as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
        quick: bool = typer.Option(False, "--quick", help="smaller sizes (10k only), for smoke runs"),
    ) -> None:
        """Embedding latency, micro-batching gain, flat vs HNSW search, gRPC Lookup."""
        from rationer.platform.logging import configure_logging
        from services.cache import bench

        configure_logging(level="WARNING")  # logs go to stderr; stdout is the report
        report = bench.run(quick=quick)
        typer.echo(json.dumps(report) if as_json else bench.format_report(report))

    @groups.eval.command("cache")
    def eval_cache(
        as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
        quantized: bool = typer.Option(False, "--int8", help="use the int8 embedder"),
        conversations: bool = typer.Option(
            False, "--conversations", help="also the 240 conversation pairs (whole vs last-message key)"
        ),
    ) -> None:
        """fow-cache hit / wrong-hit table at the default thresholds, plus the sweep."""
        from rationer.platform.logging import configure_logging
        from services.cache import evaluate

        configure_logging(level="WARNING")  # keep stdout to the one report
        report = evaluate.main(quantized=quantized, conversations=conversations)
        typer.echo(json.dumps(report) if as_json else evaluate.format_report(report))
