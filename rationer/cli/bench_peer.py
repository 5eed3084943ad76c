"""``rationer bench peer``: Rationer against LiteLLM's proxy (code in ``bench/peer.py``).

As root with ``unshare`` the command runs itself again inside a new network
namespace whose only interface is loopback, so every process of the run
(client, upstream, LiteLLM, Rationer) shares one loopback and none can reach
the internet; elsewhere it runs on the host network and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rationer.cli.main import CliGroups

NETNS_SH = 'ip link set lo up && exec "$0" "$@"'


def _netns_usable() -> str:
    """Empty when ``unshare -n`` works here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if not (shutil.which("unshare") and shutil.which("ip")):
        return "unshare or ip not on PATH"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    return "" if probe.returncode == 0 else f"unshare -n failed: {probe.stderr.strip()[:200]}"


def _print(result: dict[str, Any]) -> None:
    setup = result["setup"]
    print(f"network: {setup['network']}; cpus {setup['cpus']}; load before {setup['loadavg_before']}, "
          f"after {setup['loadavg_after']}")  # fmt: skip
    if not setup["litellm_available"]:
        print(f"litellm: unavailable: {setup['litellm_unavailable_reason']}")
    for level, label in (("c1", "concurrency 1"), ("c32", f"concurrency {result['c32']['direct']['concurrency']}")):
        r = result[level]
        print(f"{label}:")
        for path in ("direct", "litellm", "rationer"):
            if path in r:
                added = r.get(f"{path}_vs_direct", {"added_p50_ms": 0.0, "added_p99_ms": 0.0})
                print(f"  {path:<9} {r[path]['rps']:>8.1f} req/s  p50 {r[path]['p50_ms']:7.2f} ms  "
                      f"p99 {r[path]['p99_ms']:7.2f} ms  added p50 {added['added_p50_ms']:6.2f} ms  "
                      f"p99 {added['added_p99_ms']:6.2f} ms")  # fmt: skip
    ratios, targets = result["ratios_rationer_over_litellm"], result["targets"]
    if ratios:
        print(f"Rationer/LiteLLM: added p50 at c=1 {ratios['added_p50_c1']}x (target <= "
              f"{targets['added_p50_ratio_max']}x), req/s at c=32 {ratios['rps_c32']}x (target >= "
              f"{targets['rps_ratio_min']}x); meets targets: {result['meets_targets']}")  # fmt: skip


def bench_peer(
    litellm_python: Annotated[str, typer.Option(help="Interpreter that has LiteLLM's proxy (default: this "
                                                     "one, with the peer extra installed).")] = sys.executable,
    requests_c1: Annotated[int, typer.Option(min=4, help="Sequential requests per path.")] = 300,
    duration_c32: Annotated[float, typer.Option(min=0.1, help="Seconds of concurrent load per path.")] = 10.0,
    concurrency: Annotated[int, typer.Option(min=2, help="Concurrent clients in the second phase.")] = 32,
    warmup: Annotated[int, typer.Option(min=0, help="Unmeasured requests before each phase.")] = 30,
    rounds: Annotated[int, typer.Option(min=1, help="Paths take turns this many times.")] = 3,
    netns: Annotated[bool, typer.Option(help="Run in a loopback-only network namespace when root.")] = True,
    in_netns: Annotated[bool, typer.Option(hidden=True)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:  # fmt: skip
    """Added p50/p99 at c=1 and req/s, p50/p99 at c=32: direct, LiteLLM's proxy and Rationer's HTTP door."""
    import asyncio

    from rationer.cli.bench_import import bench_module

    network = "loopback-only network namespace (unshare -n)" if in_netns else "host network"
    if netns and not in_netns:
        why = _netns_usable()
        if not why:
            args = [a for a in sys.argv[1:] if a != "--in-netns"]
            cmd = [sys.executable, "-m", "rationer.cli.main", *args, "--in-netns"]
            raise typer.Exit(subprocess.run(["unshare", "-n", "sh", "-c", NETNS_SH, *cmd]).returncode)
        network = f"host network (no namespace: {why})"
        print(f"note: running without a network namespace ({why}); LiteLLM's local-file switches still apply",
              file=sys.stderr)  # fmt: skip
    result = asyncio.run(bench_module("bench.peer").run_bench(
        litellm_python=litellm_python, requests_c1=requests_c1, duration_c32=duration_c32,
        concurrency=concurrency, warmup=warmup, rounds=rounds, network=network))  # fmt: skip
    if as_json:
        print(json.dumps(result))
    else:
        _print(result)


def register(groups: CliGroups) -> None:
    groups.bench.command("peer")(bench_peer)
