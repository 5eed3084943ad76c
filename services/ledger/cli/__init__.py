"""CLI commands of the ledger: serve, keys, budgets, chargeback report, bench."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rationer.cli.main import CliGroups

LEDGER_OPT = typer.Option("127.0.0.1:7401", "--ledger", envvar="RATIONER_LEDGER_ADDRESS",
                          help="Address of the ledger gRPC server.")  # fmt: skip
TOKEN_OPT = typer.Option("", "--admin-token", envvar="RATIONER_ADMIN_TOKEN",
                         help="Ledger admin token (or an admin API key).")  # fmt: skip


def _run(coro: Any) -> Any:
    from rationer.errors import RationerError

    try:
        return asyncio.run(coro)
    except RationerError as exc:
        typer.echo(f"error ({exc.code}): {exc.message}", err=True)
        raise typer.Exit(2) from None


def serve(config: Path = typer.Option(None, "--config", help="TOML file with a [ledger] section.")) -> None:
    """Run the ledger in the foreground until SIGTERM."""
    from services.ledger.main import main

    main(config)


def keys_create(
    org: str = typer.Option(..., help="Org name (created if missing)."),
    team: str = typer.Option(..., help="Team name (created if missing)."),
    user: str = typer.Option("", help="User email (created if missing)."),
    service_account: str = typer.Option("", help="Team service-account name instead of a user."),
    tier: list[str] = typer.Option([], "--tier", help="Allowed tier; repeat. None = every tier."),
    ttl_days: float = typer.Option(0.0, help="Expire after this many days (0 = never)."),
    name: str = typer.Option("", help="A label for the key."),
    admin: bool = typer.Option(False, "--admin", help="The key may call admin RPCs (same as --role admin)."),
    role: str = typer.Option("", "--role", help="admin | finops | viewer | member (default: member, or admin "
                                                "with --admin); see docs/console.md."),
    project: str = typer.Option("", help="Bind the key to this project tag: its requests always count "
                                         "against project:<org>/<tag> budgets."),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """Create an API key; the secret is printed once."""
    from services.ledger.cli.ops import create_key

    out = _run(create_key(ledger, admin_token, org, team, user, service_account, tier, ttl_days, name, admin,
                          project, role))  # fmt: skip
    typer.echo(f"key_id: {out.key.key_id}\nteam:   {out.key.team_id}\nuser:   {out.key.user_id or '-'}")
    if out.key.project:
        typer.echo(f"project: {out.key.project}")
    typer.echo(f"secret: {out.secret}\n(store it now: it is shown only once)")


def keys_list(
    org: str = typer.Option("", help="Only this org."), team: str = typer.Option("", help="Only this team id."),
    all_keys: bool = typer.Option(False, "--all", help="Include revoked keys."),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """List API keys (never their secrets)."""
    from services.ledger.cli.ops import list_keys

    typer.echo(_run(list_keys(ledger, admin_token, org, team, all_keys)))


def keys_revoke(key_id: str, ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT) -> None:
    """Revoke an API key at once."""
    from services.ledger.cli.ops import revoke_key

    typer.echo(_run(revoke_key(ledger, admin_token, key_id)))


def budgets_set(
    scope: str = typer.Argument(..., help="org:acme | team:acme/eng | user:acme/eng/a@x.com | key:k_.. | "
                                          "project:acme/web"),
    usd: float = typer.Option(None, help="Hard limit in USD."),
    tokens: int = typer.Option(None, help="Hard limit in tokens."),
    period: str = typer.Option("monthly", help="daily | monthly | lifetime (UTC calendar)."),
    soft: float = typer.Option(0.0, help="Soft-alert fraction, e.g. 0.8 (0 = default)."),
    alert: list[float] = typer.Option([], "--alert", help="Alert when spend crosses this fraction of the hard "
                                                          "limit; repeat (default 0.5, 0.8, 0.95; unchanged on "
                                                          "an existing budget)."),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """Create or replace the budget of a scope."""
    from services.ledger.cli.ops import set_budget

    if (usd is None) == (tokens is None):
        raise typer.BadParameter("give exactly one of --usd or --tokens")
    typer.echo(_run(set_budget(ledger, admin_token, scope, usd, tokens, period, soft, alert)))


def budgets_show(
    scope: str = typer.Argument("", help="kind:id, or nothing for every budget."),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """Show budgets with spend, holds and remaining."""
    from services.ledger.cli.ops import show_budgets

    typer.echo(_run(show_budgets(ledger, admin_token, scope)))


def chargeback(
    period: str = typer.Option("", help="A UTC month (YYYY-MM), a day (YYYY-MM-DD), or 'today'; "
                                        "default: the current month by the ledger's clock."),
    by: str = typer.Option("team", help="org | team | user | key | project | model | day | tier"),
    fmt: str = typer.Option("table", "--format", help="table | csv | json"),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """Spend, tokens, requests, cache hits, savings (cache, routing), denials and soft alerts per group."""
    from services.ledger.cli.ops import chargeback as run_report

    if fmt not in ("table", "csv", "json"):
        raise typer.BadParameter("--format must be table, csv or json")
    typer.echo(_run(run_report(ledger, admin_token, period, by, fmt)))


def limits_set(
    scope: str = typer.Argument(..., help="team:acme/eng or key:k_..."),
    rpm: int = typer.Option(0, "--rpm", help="Requests per minute (0 = no limit)."),
    tpm: int = typer.Option(0, "--tpm", help="Tokens per minute (0 = no limit)."),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """Set the rate limits of a team or a key (replaces both)."""
    from services.ledger.cli.ops import set_limit

    typer.echo(_run(set_limit(ledger, admin_token, scope, rpm, tpm)))


def prices_set(
    tier: str = typer.Argument(..., help="Tier name, e.g. frontier."),
    model: str = typer.Option(..., help="The model the tier serves, e.g. gpt-4o."),
    input_usd: float = typer.Option(..., "--input", help="USD per million prompt tokens."),
    output_usd: float = typer.Option(..., "--output", help="USD per million completion tokens."),
    reference: bool = typer.Option(False, "--reference", help="Savings are measured against this price."),
    cache_read_usd: float | None = typer.Option(None, "--cache-read",
                                                help="USD per million prompt-cache reads (default: --input)."),
    cache_creation_usd: float | None = typer.Option(None, "--cache-creation",
                                                    help="USD per million prompt-cache writes (default: --input)."),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """Add a new price version for a tier; earlier charges keep their price."""
    from services.ledger.cli.ops import set_price

    typer.echo(_run(set_price(ledger, admin_token, tier, model, input_usd, output_usd, reference,
                              (cache_read_usd, cache_creation_usd))))  # fmt: skip


def events_list(
    kind: str = typer.Option("", help="charge | cache_hit | embedding | denied | soft_alert | wrong_hit | ..."),
    period: str = typer.Option("", help="A UTC month (YYYY-MM) or day (YYYY-MM-DD); default: all time."),
    limit: int = typer.Option(100, help="At most this many, oldest first (<= 10,000)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON array."),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """Usage events, including budget denials and soft-limit alerts."""
    from services.ledger.cli.ops import list_events

    typer.echo(_run(list_events(ledger, admin_token, kind, period, limit, as_json)))


def bench(
    json_out: bool = typer.Option(False, "--json", help="Print exactly one JSON object."),
    backend: str = typer.Option("both", help="sqlite | postgres | both"),
    duration: float = typer.Option(3.0, help="Seconds per measurement point."),
    clients: str = typer.Option("1,16,64", help="Concurrent client counts."),
    postgres_dsn: str = typer.Option("", help="Default: the ledger settings' postgres_dsn "
                                              "([ledger] in --config, or RATIONER_LEDGER__POSTGRES_DSN)."),
    config: Path = typer.Option(None, "--config", help="TOML file with a [ledger] section."),
    replicas: int = typer.Option(1, help="N > 1: one hot budget on PostgreSQL, 1 replica vs N with escrow "
                                         "(uses the largest --clients value)."),
) -> None:  # fmt: skip
    """Authorize+Commit pairs/s and latency vs a no-op gRPC ceiling (or, --replicas N, escrow scaling)."""
    from rationer.cli.bench_import import bench_module
    from rationer.platform.logging import configure_logging
    from rationer.platform.settings import load_settings
    from services.ledger.settings import LedgerSettings

    configure_logging("console", "ERROR")  # stdout stays clean for --json
    dsn = postgres_dsn or load_settings(LedgerSettings, "ledger", toml_path=config, environ=os.environ).postgres_dsn
    if replicas > 1:
        most = max(int(c) for c in clients.split(","))
        bench_module("bench.ledger_replicas").main(json_out, replicas, duration, most, dsn)
        return
    bench_main = bench_module("bench.ledger").main
    bench_main(json_out, backend, duration, [int(c) for c in clients.split(",")], dsn)


def register(groups: CliGroups) -> None:
    """Attach this service's commands to the ``rationer`` CLI groups."""
    groups.serve.command("ledger")(serve)
    groups.keys.command("create")(keys_create)
    groups.keys.command("list")(keys_list)
    groups.keys.command("revoke")(keys_revoke)
    groups.budgets.command("set")(budgets_set)
    groups.budgets.command("show")(budgets_show)
    groups.report.command("chargeback")(chargeback)
    groups.limits.command("set")(limits_set)
    groups.prices.command("set")(prices_set)
    groups.events.command("list")(events_list)
    groups.bench.command("ledger")(bench)
    from services.ledger.cli import budgets_cli, console

    console.register(groups)
    budgets_cli.register(groups)
