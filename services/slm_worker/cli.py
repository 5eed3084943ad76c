"""CLI commands of the SLM worker: ``serve slm-worker`` and ``bench worker``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rationer.cli.main import CliGroups


def register(groups: CliGroups) -> None:
    """Attach this service's commands to the ``rationer`` CLI groups."""

    @groups.serve.command("slm-worker")
    def serve(
        config: Path | None = typer.Option(None, "--config", help="TOML file with a [worker] section"),
    ) -> None:
        """Serve GGUF models with llama.cpp over gRPC until SIGTERM."""
        from services.slm_worker.main import main

        raise typer.Exit(main(config))

    @groups.bench.command("worker")
    def bench(
        json_out: bool = typer.Option(False, "--json", help="print exactly one JSON object"),
        tokens: int = typer.Option(64, help="tokens generated per stream"),
        rounds: int = typer.Option(6, help="rounds over the 3 prompts; one bare/worker pair each"),
        threads: int = typer.Option(1, help="llama.cpp threads for the single-stream runs"),
        concurrent_rounds: int = typer.Option(3, help="slots/batched pairs per stream count (medians)"),
    ) -> None:
        """Worker vs bare llama-cpp-python: tok/s ratio, TTFT overhead, concurrency."""
        from rationer.cli.bench_import import bench_module

        bench_module("bench.slm_worker").main(
            json_out=json_out, tokens=tokens, rounds=rounds, threads=threads, concurrent_rounds=concurrent_rounds
        )
