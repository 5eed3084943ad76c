"""``rationer bench up``: start ``rationer up`` several times and time each until ready (``bench/up.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rationer.cli.main import CliGroups


def bench_up(
    starts: Annotated[int, typer.Option(min=1, help="Measured starts (after one unmeasured first start).")] = 5,
    data_dir: Annotated[Path | None, typer.Option(help="Data dir to start on (default: a fresh temporary one).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:  # fmt: skip
    """Seconds from `rationer up` to ready (four services SERVING, HTTP /readyz 200): each start and the median."""
    import asyncio

    from rationer.cli.bench_import import bench_module

    result = asyncio.run(bench_module("bench.up").run_bench(starts=starts, data_dir=data_dir))
    if as_json:
        print(json.dumps(result))
        return
    print(f"first start (creates the data dir): {result['first_start_s']:.2f} s")
    print("starts: " + ", ".join(f"{t:.2f} s" for t in result["starts_s"]))
    print(f"median {result['median_s']:.2f} s (target <= {result['target_s']:g} s; "
          f"meets target: {result['meets_target']}); cpus {result['cpus']}, load {result['loadavg']}")  # fmt: skip


def register(groups: CliGroups) -> None:
    groups.bench.command("up")(bench_up)
