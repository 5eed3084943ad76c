"""CLI commands the console's foundation adds: key updates, budget removal, the audit report, seeding."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from services.ledger.cli import LEDGER_OPT, TOKEN_OPT, _run

if TYPE_CHECKING:
    from rationer.cli.main import CliGroups


def keys_update(
    key_id: str = typer.Argument(..., help="The key id (k_...)."),
    role: str = typer.Option("", "--role", help="admin | finops | viewer | member (default: unchanged)."),
    tier: list[str] = typer.Option([], "--tier", help="Replace the allowed tiers; repeat."),
    all_tiers: bool = typer.Option(False, "--all-tiers", help="Allow every tier."),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """Change a key's role or allowed tiers (audited)."""
    from services.ledger.cli.console_ops import update_key

    if tier and all_tiers:
        raise typer.BadParameter("give --tier or --all-tiers, not both")
    tiers = [] if all_tiers else (tier or None)
    typer.echo(_run(update_key(ledger, admin_token, key_id, role, tiers)))


def budgets_remove(
    budget_id: str = typer.Argument(..., help="budget:<kind>:<scope>:<unit>:<period> (`budgets show`)."),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """Delete a budget (audited)."""
    from services.ledger.cli.console_ops import remove_budget

    typer.echo(_run(remove_budget(ledger, admin_token, budget_id)))


def audit_report(
    period: str = typer.Option("", help="A UTC month (YYYY-MM) or day (YYYY-MM-DD); default: all time."),
    action: str = typer.Option("", help="Only this action, e.g. keys.create, budgets.set."),
    limit: int = typer.Option(1000, help="At most this many, oldest first (<= 10,000)."),
    fmt: str = typer.Option("table", "--format", help="table | csv | json"),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """The audit log of admin changes: who, what, when, before/after (admin only)."""
    from services.ledger.cli.console_ops import audit

    if fmt not in ("table", "csv", "json"):
        raise typer.BadParameter("--format must be table, csv or json")
    typer.echo(_run(audit(ledger, admin_token, period, action, limit, fmt)))


def seed_events(
    count: int = typer.Option(1_000_000, help="How many usage events."),
    backend: str = typer.Option("", help="sqlite | postgres (default: the ledger settings' backend)."),
    sqlite_path: Path = typer.Option(None, help="Default: the ledger settings' sqlite_path."),
    postgres_dsn: str = typer.Option("", help="Default: the ledger settings' postgres_dsn."),
    days: int = typer.Option(30, help="Spread the events over the last this many days."),
    keys: int = typer.Option(200, help="Over this many synthetic keys (4 orgs, 20 teams)."),
    seed: int = typer.Option(1, help="Random seed."),
    config: Path = typer.Option(None, "--config", help="TOML file with a [ledger] section."),
) -> None:  # fmt: skip
    """Seed synthetic usage events (and their rollups) into a ledger database, for benchmarks."""
    from rationer.platform.settings import load_settings
    from services.ledger.cli.console_ops import seed as run_seed
    from services.ledger.settings import LedgerSettings

    s = load_settings(LedgerSettings, "ledger", toml_path=config, environ=os.environ)
    backend = backend or s.backend
    if backend not in ("sqlite", "postgres"):
        raise typer.BadParameter("--backend must be sqlite or postgres")
    if count < 0 or days < 1 or keys < 1:
        raise typer.BadParameter("--count must be >= 0, --days and --keys >= 1")
    target = postgres_dsn or s.postgres_dsn if backend == "postgres" else str(sqlite_path or s.sqlite_path)
    typer.echo(_run(run_seed(backend, target, count, days, keys, seed)))


def bench_console(
    json_out: bool = typer.Option(False, "--json", help="Print exactly one JSON object."),
    backend: str = typer.Option("both", help="sqlite | postgres | both"),
    count: int = typer.Option(1_000_000, help="Seeded usage events."),
    repeats: int = typer.Option(30, help="Runs of each query."),
    keys: int = typer.Option(50, help="Synthetic keys the events spread over (rollup rows grow with them)."),
    postgres_dsn: str = typer.Option("", help="Default: the ledger settings' postgres_dsn."),
    config: Path = typer.Option(None, "--config", help="TOML file with a [ledger] section."),
) -> None:  # fmt: skip
    """p95 of the console's Overview and Chargeback queries on N seeded events (target <= 300 ms)."""
    from rationer.cli.bench_import import bench_module
    from rationer.platform.logging import configure_logging
    from rationer.platform.settings import load_settings
    from services.ledger.settings import LedgerSettings

    configure_logging("console", "ERROR")  # stdout stays clean for --json
    dsn = postgres_dsn or load_settings(LedgerSettings, "ledger", toml_path=config, environ=os.environ).postgres_dsn
    bench_module("bench.ledger_console").main(json_out, backend, count, repeats, dsn, keys)


def bench_console_http(
    json_out: bool = typer.Option(False, "--json", help="Print exactly one JSON object."),
    count: int = typer.Option(1_000_000, help="Seeded usage events."),
    repeats: int = typer.Option(20, help="Loads of each page."),
    keys: int = typer.Option(50, help="Synthetic keys the events spread over."),
) -> None:  # fmt: skip
    """p95 of each console page's data over HTTP (/console/api/...) on N seeded events, vs its Usage RPC."""
    from rationer.cli.bench_import import bench_module
    from rationer.platform.logging import configure_logging

    configure_logging("console", "ERROR")  # stdout stays clean for --json
    bench_module("bench.console_http").main(json_out, count, repeats, keys)


def register(groups: CliGroups) -> None:
    groups.keys.command("update")(keys_update)
    groups.budgets.command("remove")(budgets_remove)
    groups.report.command("audit")(audit_report)
    groups.bench.command("console")(bench_console)
    groups.bench.command("console-http")(bench_console_http)
    ledger_app = typer.Typer(help="Ledger maintenance: seed synthetic events.", no_args_is_help=True)
    groups.root.add_typer(ledger_app, name="ledger")
    ledger_app.command("seed-events")(seed_events)
