"""``rationer bench http`` (light: the bench's imports happen when it runs)."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def bench_http(
    requests_c1: Annotated[int, typer.Option(min=10, help="Requests per path at concurrency 1.")] = 300,
    requests_c32: Annotated[int, typer.Option(min=64, help="Requests per path at concurrency 32.")] = 3000,
    warmup: Annotated[int, typer.Option(min=0, help="Unmeasured requests before each run.")] = 30,
    rounds: Annotated[int, typer.Option(min=1, help="Paths take turns this many times.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Added latency and throughput of the HTTP front door (and gRPC) on the cache-miss path."""
    import asyncio

    from rationer.cli.bench_import import bench_module

    run_bench = bench_module("bench.router_http").run_bench
    result = asyncio.run(run_bench(requests_c1=requests_c1, requests_c32=requests_c32, warmup=warmup, rounds=rounds))
    if as_json:
        print(json.dumps(result))
        return
    for level in ("c1", "c32"):
        r = result[level]
        print(f"concurrency {level[1:]}:")
        for path in ("direct", "http", "grpc", "http_auto"):
            print(f"  {path:<9} {r[path]['rps']:>8.1f} req/s  p50 {r[path]['p50_ms']:7.2f} ms  "
                  f"p99 {r[path]['p99_ms']:7.2f} ms")  # fmt: skip
        for path in ("http", "grpc", "http_auto"):
            added = r[f"{path}_vs_direct"]
            print(f"  {path} adds p50 {added['added_p50_ms']:.2f} ms, p99 {added['added_p99_ms']:.2f} ms")
    print(f"meets targets: {result['meets_targets']}")
