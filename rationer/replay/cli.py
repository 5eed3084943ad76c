"""Replay commands: ``trace synth``, ``trace import``, ``bench replay``, ``report replay``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rationer.cli.main import CliGroups
    from rationer.replay.runner import ReplayConfig
    from rationer.replay.trace import Trace

JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object.")]


def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Trace file to write (JSONL).")] = Path("trace.jsonl"),
    requests: Annotated[int, typer.Option(min=1, max=1_000_000)] = 300,
    seed: Annotated[int, typer.Option()] = 7,
    repeat_rate: Annotated[float, typer.Option(min=0.0, max=0.95, help="Share of repeated prompts.")] = 0.3,
    paraphrase_share: Annotated[float, typer.Option(min=0.0, max=1.0, help="Of repeats: reworded.")] = 0.5,
    zipf_s: Annotated[float, typer.Option(min=0.0, help="Popularity exponent of repeats.")] = 1.1,
    sampled_share: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share at temperature 0.7.")] = 0.05,
    max_tokens: Annotated[int, typer.Option(min=1, max=4096)] = 8,
    duration_h: Annotated[float, typer.Option(min=0.001, help="Simulated span (diurnal curve).")] = 24.0,
    org: Annotated[str, typer.Option()] = "acme",
    data_dir: Annotated[Path | None, typer.Option(help="Holds routellm/ (default ../shared/data).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build a realistic, seeded trace: held-out MMLU/GSM8K, AlpacaEval chat prompts and office tasks."""
    from rationer.replay.synth import SynthConfig, load_pools, summary, synthesize
    from rationer.replay.trace import write_trace

    cfg = SynthConfig(requests=requests, seed=seed, repeat_rate=repeat_rate, paraphrase_share=paraphrase_share,
                      zipf_s=zipf_s, sampled_share=sampled_share, max_tokens=max_tokens,
                      duration_s=duration_h * 3600.0, org=org)  # fmt: skip
    header, lines = synthesize(cfg, load_pools(data_dir))
    write_trace(out, header, lines)
    info = {"trace": str(out), **summary(lines), "budgets": [b.__dict__ for b in header.budgets]}
    print(json.dumps(info) if as_json else f"wrote {out}: {json.dumps(info, indent=1)}")


def import_(
    log_file: Annotated[Path, typer.Argument(help="OpenAI-style request log (JSONL).")],
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("trace.jsonl"),
    org: Annotated[str, typer.Option(help="Org for lines without metadata.org.")] = "default",
    team: Annotated[str, typer.Option(help="Team for lines without metadata.team.")] = "default",
    user: Annotated[str, typer.Option(help="User for lines without 'user'.")] = "anonymous",
    project: Annotated[str, typer.Option()] = "",
    max_tokens: Annotated[int, typer.Option(min=1, help="When a request sets none.")] = 256,
    as_json: JsonOpt = False,
) -> None:
    """Convert an OpenAI chat completion request log into the trace format."""
    from rationer.replay.importer import ImportDefaults, header_for, import_log
    from rationer.replay.trace import write_trace

    result = import_log(log_file, ImportDefaults(org, team, user, project, max_tokens))
    n = write_trace(out, header_for(log_file, result), result.lines)
    info = {"trace": str(out), "requests": n, "skipped": result.skipped}
    print(json.dumps(info) if as_json else f"wrote {n} requests to {out} (skipped: {result.skipped})")


def _progress_run(trace: Trace, cfg: ReplayConfig, trace_path: str) -> dict[str, Any]:
    import asyncio

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rationer.replay.driver import Record
    from rationer.replay.runner import run_replay

    counts = {"hit": 0, "denied": 0, "error": 0}
    cols = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("hits {task.fields[hit]} denied {task.fields[denied]} errors {task.fields[error]}"))  # fmt: skip
    with Progress(*cols, console=Console(stderr=True), transient=False) as progress:
        fields: dict[str, Any] = counts
        task = progress.add_task("replay", total=len(trace.lines), **fields)

        def done(rec: Record) -> None:
            counts["hit"] += rec.cache_hit
            counts["denied"] += rec.status == "denied"
            counts["error"] += rec.status == "error"
            progress.update(task, advance=1, **fields)

        return asyncio.run(run_replay(trace, cfg, done, trace_path))


def bench_replay(
    trace_file: Annotated[Path, typer.Argument(help="Trace (JSONL), e.g. from `rationer trace synth`.")],
    speed: Annotated[str, typer.Option(help="'max' or a factor such as '10x' (trace seconds per second).")] = "max",
    concurrency: Annotated[int, typer.Option(min=1, max=4096)] = 4,
    address: Annotated[str, typer.Option(envvar="RATIONER_ADDRESS", help="Router gRPC address.")] = "127.0.0.1:7400",
    ledger: Annotated[str, typer.Option(envvar="RATIONER_LEDGER_ADDRESS", help="Ledger (prices, Usage).")] = (
        "127.0.0.1:7401"
    ),
    admin_token: Annotated[str, typer.Option(envvar="RATIONER_ADMIN_TOKEN", help="Ledger admin credential.")] = "",
    provision: Annotated[bool, typer.Option(help="Create orgs/teams/users/keys/budgets from the trace.")] = False,
    keys: Annotated[Path | None, typer.Option(help="Keys file: written by --provision, read otherwise.")] = None,
    org_suffix: Annotated[str | None, typer.Option(help="Appended to org names (default: -<run id>).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Result file for `report replay`.")] = Path(
        "replay-result.json"
    ),
    driver_check: Annotated[bool, typer.Option(help="Also drive a no-op router to measure the harness.")] = True,
    up: Annotated[bool, typer.Option("--up", help="Start a private gateway (SmolLM2 + llama_cpp.server).")] = False,
    gateway_config: Annotated[
        Path | None, typer.Option(help="With --up: TOML merged over its config (e.g. [router] strong_threshold).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay a trace against a gateway through its gRPC API; compare with baselines."""
    import asyncio

    from rationer.replay.runner import ReplayConfig, parse_speed
    from rationer.replay.summary import summarize
    from rationer.replay.trace import read_trace

    trace = read_trace(trace_file)
    cfg = ReplayConfig(address=address, ledger=ledger, speed=parse_speed(speed), concurrency=concurrency,
                       admin_token=admin_token, provision=provision, keys_path=keys, org_suffix=org_suffix,
                       driver_check=driver_check)  # fmt: skip
    if up:
        from rationer.platform.settings import read_toml

        extra = read_toml(gateway_config) if gateway_config else {}
        result = asyncio.run(_with_own_gateway(trace, cfg, str(trace_file), extra))
    else:
        result = _progress_run(trace, cfg, str(trace_file))
    out.write_text(json.dumps(result))
    s = summarize(result)
    if as_json:
        print(json.dumps({"result": str(out), **{k: v for k, v in s.items() if k not in ("series", "curve")}}))
    else:
        _print_summary(s, out)


async def _with_own_gateway(trace: Trace, cfg: ReplayConfig, trace_path: str, extra: dict[str, Any]) -> dict[str, Any]:
    import asyncio
    import dataclasses

    from rationer.replay.selfhost import self_hosted

    async with self_hosted(base_env=dict(os.environ), extra=extra) as gw:
        own = dataclasses.replace(cfg, address=gw.address, ledger=gw.ledger, admin_token=gw.admin_token,
                                  provision=True)  # fmt: skip
        return await asyncio.to_thread(_progress_run, trace, own, trace_path)


def _print_summary(s: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from rationer.replay.report import summary_rows

    table = Table(title=f"Replay of {s['requests']} requests ({out})")
    for col in ("policy", "cost", "vs all-frontier", "quality retained", "Rationer saves"):
        table.add_column(col)
    for row in summary_rows(s):
        table.add_row(*row)
    console = Console()
    console.print(table)
    c, lat = s["cache"], s["latency"]
    console.print(f"cache hit rate {100 * c['hit_rate']:.1f}%, wrong hits {c['wrong_hits']}; tier mix {s['tier_mix']}")
    e2e, gw = lat["end_to_end_ms"], lat["gateway_overhead_ms"]
    console.print(
        f"latency p50/p95/p99 {e2e['p50']:.0f}/{e2e['p95']:.0f}/{e2e['p99']:.0f} ms, gateway overhead "
        f"{gw['p50']:.1f}/{gw['p95']:.1f}/{gw['p99']:.1f} ms; budget events {s['budget_events']}"
    )
    if s.get("ledger_check"):
        console.print(f"ledger check: {'match' if s['ledger_check']['match'] else 'MISMATCH'}")
    if s.get("driver_check") and s["driver_check"].get("ratio"):
        console.print(f"driver {s['driver_check']['rps']:.0f} req/s vs gateway "
                      f"{s['driver_check']['gateway_rps']:.2f} req/s ({s['driver_check']['ratio']:.0f}x)")  # fmt: skip


def report_replay(
    result_file: Annotated[Path, typer.Argument(help="Result of `rationer bench replay`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Markdown report.")] = Path("replay-report.md"),
    plot_dir: Annotated[Path | None, typer.Option(help="Where PNGs go (default: next to the report).")] = None,
    prefix: Annotated[str, typer.Option(help="PNG file name prefix.")] = "replay",
    as_json: JsonOpt = False,
) -> None:
    """Markdown report + PNG plots (cost over time, cost-quality, tier share) from a replay result."""
    from rationer.errors import InvalidArgument
    from rationer.replay.report import write_report
    from rationer.replay.summary import summarize

    try:
        result = json.loads(result_file.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read replay result {result_file}: {exc}") from None
    s = summarize(result)
    written = write_report(s, out, plot_dir, prefix)
    if as_json:
        print(json.dumps({**written, **{k: v for k, v in s.items() if k not in ("series", "curve")}}))
    else:
        _print_summary(s, result_file)
        print(f"report: {written['report']}; plots: {', '.join(written['plots'].values())}")


def register(groups: CliGroups) -> None:
    groups.trace.command("synth")(synth)
    groups.trace.command("import")(import_)
    groups.bench.command("replay")(bench_replay)
    groups.report.command("replay")(report_replay)
