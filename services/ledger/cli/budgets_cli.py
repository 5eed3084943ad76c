"""CLI of budget status, alerts and webhooks: `rationer budgets status|alerts|webhook ...`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from services.ledger.cli import LEDGER_OPT, TOKEN_OPT, _run

if TYPE_CHECKING:
    from rationer.api.ledger.v1 import ledger_pb2 as pb
    from rationer.cli.main import CliGroups


def _amount(b: pb.Budget, n: float) -> str:
    from services.ledger import convert as cv
    from services.ledger.report import usd

    return usd(int(n)) if cv.UNIT[b.unit] == "usd" else f"{int(n):,} tokens"


def _when(t: object, present: bool) -> str:
    from datetime import UTC

    from google.protobuf.timestamp_pb2 import Timestamp

    assert isinstance(t, Timestamp)
    return t.ToDatetime(UTC).strftime("%Y-%m-%d %H:%M UTC") if present else "never at this rate"


async def _status(ledger: str, token: str, budget_id: str) -> str:
    from services.ledger.admin_client import LedgerAdminClient
    from services.ledger.cli.ops import need_token

    async with LedgerAdminClient(ledger, need_token(token)) as c:
        rows = (await c.budget_status(budget_id)).budgets
    out = []
    for s in rows:
        b = s.budget
        flag = "  RUNS OUT BEFORE PERIOD END" if s.runs_out_before_period_end else ""
        out.append(f"{b.id}  spent={_amount(b, b.spent)} of {_amount(b, b.hard_limit)}  "
                   f"rate={_amount(b, s.rate_per_day)}/day  runs out: "
                   f"{_when(s.runs_out_at, s.HasField('runs_out_at'))}{flag}")  # fmt: skip
        out += [f"  alert {a.kind} {a.fraction:g}: {a.text}" for a in s.alerts]
    return "\n".join(out) or "(no budgets)"


async def _alerts(ledger: str, token: str, budget_id: str, limit: int) -> str:
    from services.ledger.admin_client import LedgerAdminClient
    from services.ledger.cli.ops import need_token

    async with LedgerAdminClient(ledger, need_token(token)) as c:
        rows = await c.list_budget_alerts(budget_id, limit)
    return "\n".join(f"{_when(a.time, True)}  {a.id}  {a.kind} {a.fraction:g}  {a.text}" for a in rows) or "(none)"


async def _webhook(ledger: str, token: str, action: str, arg: str, budget_id: str = "", org: str = "",
                   name: str = "") -> str:  # fmt: skip
    from services.ledger.admin_client import LedgerAdminClient
    from services.ledger.cli.ops import need_token

    async with LedgerAdminClient(ledger, need_token(token)) as c:
        if action == "add":
            r = await c.add_webhook(arg, budget_id=budget_id, org_id=org, name=name)
            return (f"webhook_id: {r.webhook.id}\nurl:    {r.webhook.url}\nsecret: {r.secret}\n"
                    "(store it now: it is shown only once; it signs X-Rationer-Signature)")  # fmt: skip
        if action == "list":
            hooks = await c.list_webhooks(budget_id=budget_id, org_id=org)
            lines = [f"{w.id}  {w.budget_id or 'org:' + w.org_id}  {w.url}  {w.name}".rstrip() for w in hooks]
            return "\n".join(lines) or "(none)"
        if action == "remove":
            w = await c.remove_webhook(arg)
            return f"removed {w.id} ({w.url})"
        if action == "test":
            d = await c.test_webhook(arg)
            last = d.log[-1] if d.log else None
            return f"{d.state}: HTTP {last.status_code if last else 0} {last.error if last else ''}".rstrip()
        deliveries = await c.list_webhook_deliveries(arg)
        lines = []
        for d in deliveries:
            lines.append(f"{d.id}  {d.state}  attempts={d.attempts}  alert={d.alert_id or 'test'}")
            lines += [f"  #{a.attempt} {_when(a.time, True)} HTTP {a.status_code} {a.error}".rstrip() for a in d.log]
        return "\n".join(lines) or "(no deliveries)"


def budgets_status(
    budget_id: str = typer.Argument("", help="One budget id, or nothing for every budget you may see."),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """Spend, rate, run-out forecast and this period's alerts of each budget."""
    typer.echo(_run(_status(ledger, admin_token, budget_id)))


def budgets_alerts(
    budget_id: str = typer.Argument("", help="One budget id, or nothing for all."),
    limit: int = typer.Option(100, help="At most this many, newest first."),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """Alerts raised: soft lines crossed, hard limits reached, run-out forecasts."""
    typer.echo(_run(_alerts(ledger, admin_token, budget_id, limit)))


def webhook_add(
    url: str = typer.Argument(..., help="http(s) URL receiving the alert JSON (Slack incoming webhooks work)."),
    budget: str = typer.Option("", "--budget", help="This budget's alerts (budget:... id)."),
    org: str = typer.Option("", "--org", help="Alerts of every budget of this org."),
    name: str = typer.Option("", help="A label."),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """Add a webhook (audited); its signing secret is printed once."""
    typer.echo(_run(_webhook(ledger, admin_token, "add", url, budget, org, name)))


def webhook_list(
    budget: str = typer.Option("", "--budget"), org: str = typer.Option("", "--org"),
    ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT,
) -> None:  # fmt: skip
    """List webhooks (never their secrets)."""
    typer.echo(_run(_webhook(ledger, admin_token, "list", "", budget, org)))


def webhook_remove(webhook_id: str, ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT) -> None:
    """Remove a webhook and its pending deliveries (audited)."""
    typer.echo(_run(_webhook(ledger, admin_token, "remove", webhook_id)))


def webhook_test(webhook_id: str, ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT) -> None:
    """Send a test alert to the webhook now."""
    typer.echo(_run(_webhook(ledger, admin_token, "test", webhook_id)))


def webhook_log(webhook_id: str, ledger: str = LEDGER_OPT, admin_token: str = TOKEN_OPT) -> None:
    """The webhook's delivery log: every delivery and attempt."""
    typer.echo(_run(_webhook(ledger, admin_token, "log", webhook_id)))


def bench_budgets(
    json_out: bool = typer.Option(False, "--json", help="Print exactly one JSON object."),
    backend: str = typer.Option("both", help="sqlite | postgres | both"),
    count: int = typer.Option(1_000_000, help="Seeded usage events."),
    repeats: int = typer.Option(20, help="Runs of each read."),
    keys: int = typer.Option(50, help="Synthetic keys the events spread over."),
    postgres_dsn: str = typer.Option("", help="Default: the ledger settings' postgres_dsn."),
) -> None:  # fmt: skip
    """p95 of the Budgets page's read (burn-down, forecast, alerts) on N seeded events (target <= 300 ms)."""
    import os

    from rationer.cli.bench_import import bench_module
    from rationer.platform.logging import configure_logging
    from rationer.platform.settings import load_settings
    from services.ledger.settings import LedgerSettings

    configure_logging("console", "ERROR")  # stdout stays clean for --json
    dsn = postgres_dsn or load_settings(LedgerSettings, "ledger", environ=os.environ).postgres_dsn
    bench_module("bench.ledger_budgets").main(json_out, backend, count, repeats, dsn, keys)


def register(groups: CliGroups) -> None:
    groups.bench.command("budgets")(bench_budgets)
    groups.budgets.command("status")(budgets_status)
    groups.budgets.command("alerts")(budgets_alerts)
    hooks = typer.Typer(help="Webhooks receiving budget alerts (admin or finops).", no_args_is_help=True)
    groups.budgets.add_typer(hooks, name="webhook")
    hooks.command("add")(webhook_add)
    hooks.command("list")(webhook_list)
    hooks.command("remove")(webhook_remove)
    hooks.command("test")(webhook_test)
    hooks.command("log")(webhook_log)
