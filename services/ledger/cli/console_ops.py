"""Async bodies of services.ledger.cli.console's commands."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rationer.api.ledger.v1 import ledger_pb2 as pb
from services.ledger.admin_client import UNCHANGED, LedgerAdminClient, Unchanged
from services.ledger.cli.ops import _key_line, need_token
from services.ledger.report import period_range


async def update_key(ledger: str, token: str, key_id: str, role: str, tiers: Sequence[str] | None,
                     expiry: int | Unchanged | None = UNCHANGED) -> str:  # fmt: skip
    async with LedgerAdminClient(ledger, need_token(token)) as c:
        return "updated: " + _key_line(await c.update_key(key_id, role=role, allowed_tiers=tiers,
                                                          expires_at_us=expiry))  # fmt: skip


def parse_expiry(text: str) -> int:
    """``--expires`` as UTC microseconds; a date means its start (00:00 UTC)."""
    import typer

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"--expires {text!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1_000_000)


async def set_prompt_logging(ledger: str, token: str, org_id: str, on: bool) -> str:
    async with LedgerAdminClient(ledger, need_token(token)) as c:
        org = await c.set_org_settings(org_id, log_prompts=on)
    return f"org {org.id}: prompt logging {'on' if org.log_prompts else 'off'}"


async def remove_budget(ledger: str, token: str, budget_id: str) -> str:
    async with LedgerAdminClient(ledger, need_token(token)) as c:
        b = await c.remove_budget(budget_id)
    return f"removed: {b.id}"


AUDIT_HEADERS = ["time", "actor", "action", "target", "before", "after"]


def _audit_rows(entries: list[pb.AuditEntry]) -> list[list[str]]:
    return [[e.time.ToDatetime(tzinfo=UTC).isoformat(), e.actor, e.action, e.target, e.before_json,
             e.after_json] for e in entries]  # fmt: skip


def render_audit(entries: list[pb.AuditEntry], fmt: str) -> str:
    rows = _audit_rows(entries)
    if fmt == "json":
        return json.dumps([{"id": e.id, "time": r[0], "actor": e.actor, "action": e.action, "target": e.target,
                            "before": json.loads(e.before_json or "null"), "after": json.loads(e.after_json or "null")}
                           for e, r in zip(entries, rows, strict=True)])  # fmt: skip
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(AUDIT_HEADERS)
        w.writerows(rows)
        return buf.getvalue().rstrip("\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Audit log")
    for h in AUDIT_HEADERS:
        table.add_column(h, overflow="fold")
    for r in rows:
        table.add_row(*r)
    out = io.StringIO()
    Console(file=out, width=240, force_terminal=False).print(table)
    return out.getvalue().rstrip("\n")


async def audit(ledger: str, token: str, period: str, action: str, limit: int, fmt: str) -> str:
    start, end = period_range(period) if period else (None, None)
    async with LedgerAdminClient(ledger, need_token(token)) as c:
        entries = await c.list_audit(action=action, limit=limit, start_us=start, end_us=end)
    return render_audit(entries, fmt)


async def seed(backend: str, target: str, count: int, days: int, keys: int, rnd_seed: int) -> str:
    import asyncio

    from services.ledger import seed as seeding
    from services.ledger.store import SQLiteStore
    from services.ledger.store_postgres import PostgresStore

    store = SQLiteStore(Path(target)) if backend == "sqlite" else PostgresStore(target)
    await store.start()  # migrates
    await store.close()
    spec = seeding.SeedSpec(count, int(time.time() * 1e6), days, keys, rnd_seed)
    t0 = time.perf_counter()
    if backend == "sqlite":
        await asyncio.to_thread(seeding.seed_sqlite, Path(target), spec)
    else:
        await asyncio.to_thread(seeding.seed_postgres, target, spec)
    where = target if backend == "sqlite" else target.split("@")[-1]
    return f"seeded {count} events into {backend} {where} in {time.perf_counter() - t0:.1f}s"
