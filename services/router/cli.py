"""Router commands: ``serve router``, ``up``, ``chat``, ``complete``, ``bench router``, ``bench http``,
``bench worker-spread``, ``router drain-journal``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rationer.cli.main import CliGroups

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML file ([router] section).")]
AddressOpt = Annotated[str, typer.Option("--address", envvar="RATIONER_ADDRESS", help="Router gRPC address.")]
KeyOpt = Annotated[str, typer.Option("--api-key", envvar="RATIONER_API_KEY",
                                     help="Your Rationer API key (default: the demo key in credentials.json).")]


def serve(config: ConfigOpt = None) -> None:
    """Run the router (the gateway's front door)."""
    from services.router.main import main

    main(config)


def up(
    data_dir: Annotated[Path, typer.Option(help="State, logs and credentials.")] = Path(".rationer"),
    base_port: Annotated[int, typer.Option(help="Router port; ledger, cache, workers follow.")] = 7400,
    http_port: Annotated[int, typer.Option(help="OpenAI-compatible HTTP port.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="SLM worker processes.")] = 1,
    worker_threads: Annotated[int, typer.Option(min=1, help="llama.cpp threads per model.")] = 2,
    frontier_url: Annotated[
        str, typer.Option(envvar="RATIONER_FRONTIER_BASE_URL", help="OpenAI-compatible base URL (adds a tier).")
    ] = "",
    frontier_key: Annotated[str, typer.Option(envvar="RATIONER_FRONTIER_API_KEY", help="Its API key.")] = "",
    frontier_model: Annotated[str, typer.Option(envvar="RATIONER_FRONTIER_MODEL")] = "gpt-4o",
    log_format: Annotated[str, typer.Option(help="console or json")] = "console",
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML merged over the generated defaults.")
    ] = None,
) -> None:
    """Run all four services with embedded defaults (SQLite, on-disk cache, SmolLM2)."""
    import asyncio

    from rationer.platform.settings import read_toml
    from rationer.up import UpOptions, run_up

    opts = UpOptions(
        data_dir=data_dir, base_port=base_port, http_port=http_port, workers=workers,
        worker_threads=worker_threads, frontier_url=frontier_url, frontier_key=frontier_key,
        frontier_model=frontier_model, log_format=log_format, base_env=dict(os.environ),
        overrides=read_toml(config),
    )  # fmt: skip
    asyncio.run(run_up(opts))


def _print_answer(answer: Any, as_json: bool) -> None:
    from rationer.platform.money import usd_text

    r = answer.route
    if as_json:
        print(json.dumps({"text": answer.text, "route": r.__dict__}, default=list))
        return
    print(answer.text)
    print(
        f"\n[tier={r.tier} model={r.model} complexity={r.complexity:.2f} cache_hit={r.cache_hit} "
        f"tokens={r.prompt_tokens}+{r.completion_tokens} cost={usd_text(r.cost_nano_usd)} "
        f"saved={usd_text(r.savings_nano_usd)} overhead={r.gateway_overhead_ms:.1f}ms request={r.request_id}]",
        file=sys.stderr,
    )


def chat(
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    address: AddressOpt = "127.0.0.1:7400",
    api_key: KeyOpt = "",
    model: Annotated[str, typer.Option(help="auto, a tier or a model name.")] = "auto",
    max_tokens: Annotated[int, typer.Option()] = 256,
    stream: Annotated[bool, typer.Option(help="Print tokens as they arrive.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ask the gateway; prints the answer and the routing metadata."""
    from rationer.cli.credentials import api_key as resolve_key
    from rationer.client import Answer, Client

    with Client(address, resolve_key(api_key)) as client:
        if not stream:
            _print_answer(client.complete(prompt, model=model, max_tokens=max_tokens), as_json)
            return
        text: list[str] = []
        for chunk in client.stream(prompt, model=model, max_tokens=max_tokens):
            if chunk.restart:
                text.clear()
                print("\n[restarted on another tier]", file=sys.stderr)
            if chunk.route is not None:
                _print_answer(Answer("".join(text), chunk.route), as_json) if as_json else _print_answer(
                    Answer("", chunk.route), False
                )
                continue
            text.append(chunk.delta)
            if not as_json:
                print(chunk.delta, end="", flush=True)


def complete(
    file: Annotated[Path, typer.Option("--file", "-f", help="Prompt file; '-' for stdin. JSON messages allowed.")],
    address: AddressOpt = "127.0.0.1:7400",
    api_key: KeyOpt = "",
    model: Annotated[str, typer.Option()] = "auto",
    max_tokens: Annotated[int, typer.Option()] = 256,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Complete a prompt read from a file (plain text, or a JSON list of {role, content})."""
    from rationer.cli.credentials import api_key as resolve_key
    from rationer.client import Client
    from rationer.errors import InvalidArgument

    key = resolve_key(api_key)
    try:
        raw = sys.stdin.read() if str(file) == "-" else file.read_text()
    except OSError as exc:
        raise InvalidArgument(f"cannot read --file {file}: {exc.strerror}") from None
    messages: Any = raw
    if raw.lstrip().startswith("["):
        try:
            messages = json.loads(raw)
        except ValueError as exc:
            raise InvalidArgument(f"--file {file} starts with '[' but is not JSON: {exc}") from None
    with Client(address, key) as client:
        _print_answer(client.complete(messages, model=model, max_tokens=max_tokens), as_json)


def bench(
    requests: Annotated[int, typer.Option(help="Requests per path and concurrency.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Gateway overhead on the miss, exact-hit and semantic-hit paths at concurrency 1 and 32."""
    import asyncio

    from rationer.cli.bench_import import bench_module

    result = asyncio.run(bench_module("bench.router").run_bench(requests=requests))
    if as_json:
        print(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="rationer bench router (overhead = e2e - model time)")
    for col in ("path", "conc", "req/s", "overhead p50 ms", "p99 ms", "hit share"):
        table.add_column(col)
    for conc in ("c1", "c32"):
        for path, r in result.get(conc, {}).items():
            if r:
                table.add_row(path, conc[1:], str(r["rps"]), str(r["overhead_p50_ms"]), str(r["overhead_p99_ms"]),
                              str(r["cache_hit_share"]))  # fmt: skip
    console = Console()
    console.print(table)
    console.print("miss-path stage p50 (ms, c=1):", result["c1"]["miss"]["stage_p50_ms"])
    console.print("meets targets:", result["meets_targets"])


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
        for path in ("direct", "http", "grpc", "messages", "http_auto"):
            print(f"  {path:<9} {r[path]['rps']:>8.1f} req/s  p50 {r[path]['p50_ms']:7.2f} ms  "
                  f"p99 {r[path]['p99_ms']:7.2f} ms")  # fmt: skip
        for path in ("http", "grpc", "messages", "http_auto"):
            added = r[f"{path}_vs_direct"]
            print(f"  {path} adds p50 {added['added_p50_ms']:.2f} ms, p99 {added['added_p99_ms']:.2f} ms")
    print(f"meets targets: {result['meets_targets']}")


def bench_worker_spread(
    requests: Annotated[int, typer.Option(min=6, help="Requests per run.")] = 30,
    concurrency: Annotated[int, typer.Option(min=1, help="Concurrent callers (the pool has 3 slots).")] = 3,
    rounds: Annotated[int, typer.Option(min=1, help="Back-to-back pairs of runs.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The router's worker choice (spare capacity) against round robin, on 2 real workers of 2 and 1 slots."""
    import asyncio

    from rationer.cli.bench_import import bench_module

    result = asyncio.run(bench_module("bench.worker_spread").run_bench(requests, concurrency, rounds))
    if as_json:
        print(json.dumps(result))
        return
    for policy in ("least_loaded", "round_robin"):
        r = result[policy]
        print(f"{policy:<13} {r['rps']:>6.2f} req/s  p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
              f"share by worker slots {r['share_by_slots']}")  # fmt: skip
    print(f"least_loaded / round_robin: req/s x{result['rps_ratio']}, p99 x{result['p99_ratio']}")


def drain_journal(
    path: Annotated[Path, typer.Argument(help="The journal file a router that is gone left behind.")],
    config: ConfigOpt = None,
    wait_s: Annotated[float, typer.Option(min=0, help="How long to retry while the ledger is away.")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Settle the unconfirmed commits of another router's journal (idempotent: nothing is billed twice)."""
    import dataclasses

    from services.router.main import drain_main

    report = drain_main(path, config, wait_s)
    if as_json:
        print(json.dumps(dataclasses.asdict(report)))
    else:
        print(f"{report.path}: {report.found} pending, {report.landed} settled, {report.refused} refused by the "
              f"ledger, {report.left} left{' (journal removed)' if report.removed else ''}")  # fmt: skip
    if report.left:
        raise typer.Exit(1)


def register(groups: CliGroups) -> None:
    router = typer.Typer(help="Router operations: journals of replicas that are gone.", no_args_is_help=True)
    groups.root.add_typer(router, name="router")
    router.command("drain-journal")(drain_journal)
    groups.serve.command("router")(serve)
    groups.bench.command("router")(bench)
    groups.root.command("up")(up)
    groups.root.command("chat")(chat)
    groups.root.command("complete")(complete)
    groups.bench.command("http")(bench_http)
    groups.bench.command("worker-spread")(bench_worker_spread)
