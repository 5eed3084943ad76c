"""`rationer bench ledger --replicas N`: one hot budget, 1 ledger replica against N with escrow.

Every ledger runs in its own process against one PostgreSQL schema. The hot
budget is one org budget that every request passes (many keys of that org,
one per client, so what is measured is the budget row and not one key's
rollup row). In the same run, interleaved (baseline, escrow, baseline,
escrow) so the shared machine's load drifts over all of them alike:

- ``single``: one replica as today (escrow off: every request locks the org row);
- ``escrow_1``: one replica with escrow on;
- ``escrow_N``: N replicas with escrow on, the clients spread over them.

The ratio ``escrow_N / single`` is the figure of issue 16 (target >= 3).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from bench.ledger import ADMIN, SERVICE_TOKEN, _create_schema, _drop_schema, _pct, _Server

ORG_LIMIT = 10**17  # hot, but never the reason for a denial


async def _setup_keys(target: str, n: int) -> list[str]:
    from services.ledger.admin_client import LedgerAdminClient

    async with LedgerAdminClient(target, ADMIN) as admin:
        org = await admin.create_org("hot")
        team = await admin.create_team(org.id, "load")
        await admin.set_budget("org", org.id, unit="usd", period="monthly", hard_limit=ORG_LIMIT)
        keys = []
        for i in range(n):
            user = await admin.create_user(team.id, f"u{i}@hot.io")
            keys.append((await admin.create_key(user_id=user.id)).key.key_id)
    return keys


async def _load(targets: list[str], keys: list[str], clients: int, duration: float) -> dict[str, float]:
    from services.ledger.calls import CommitCall
    from services.ledger.client import LedgerClient

    # A few channels per replica; worker i talks to replica i % N.
    pools = [[LedgerClient(t, service_token=SERVICE_TOKEN) for _ in range(4)] for t in targets]
    lat: list[float] = []
    pairs = 0
    stop_at = time.perf_counter() + duration

    async def worker(i: int) -> None:
        nonlocal pairs
        pool = pools[i % len(pools)]
        client, key = pool[(i // len(pools)) % len(pool)], keys[i % len(keys)]
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            r = await client.authorize(key, "local-small", prompt_tokens=200, max_completion_tokens=256)
            await client.commit(CommitCall(r.reservation_id, key, 180, 90, latency_ms=5))
            lat.append(time.perf_counter() - t0)
            pairs += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    for pool in pools:
        for c in pool:
            await c.close()
    return {"pairs_per_s": pairs / elapsed, "pair_p50_ms": _pct(lat, 0.5) * 1e3,
            "pair_p99_ms": _pct(lat, 0.99) * 1e3, "pairs": pairs}  # fmt: skip


def _cpu_s(servers: list[_Server]) -> float:
    """CPU seconds (user + system) the ledger processes used so far (Linux /proc; 0 elsewhere)."""
    total = 0.0
    for srv in servers:
        try:
            fields = Path(f"/proc/{srv.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def _load_cpu(group: list[_Server], keys: list[str], clients: int, duration: float) -> dict[str, float]:
    before = _cpu_s(group)
    row = await _load([s.target for s in group], keys, clients, duration)
    row["ledger_cpu_ms_per_pair"] = (_cpu_s(group) - before) * 1e3 / max(1, row["pairs"])
    return row


def _merge(rows: list[dict[str, float]]) -> dict[str, float]:
    n = len(rows)
    return {"pairs_per_s": round(sum(r["pairs_per_s"] for r in rows) / n, 1),
            "ledger_cpu_ms_per_pair": round(sum(r["ledger_cpu_ms_per_pair"] for r in rows) / n, 2),
            "pair_p50_ms": round(sum(r["pair_p50_ms"] for r in rows) / n, 2),
            "pair_p99_ms": round(max(r["pair_p99_ms"] for r in rows), 2),
            "pairs": int(sum(r["pairs"] for r in rows))}  # fmt: skip


def _check_books(dsn: str) -> dict[str, int]:
    """After every replica stopped (and settled): the org budget's spent equals the sum of the charges."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        spent = conn.execute("SELECT spent FROM budgets WHERE scope_key = 'org:hot'").fetchone()
        charges = conn.execute("SELECT COALESCE(SUM(cost), 0), COUNT(*) FROM events WHERE kind = 'charge'").fetchone()
        slices = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM escrow_slices").fetchone()
        holds = conn.execute("SELECT COUNT(*) FROM escrow_holds").fetchone()
    assert spent is not None and charges is not None and slices is not None and holds is not None
    return {"spent": int(spent[0]), "charges": int(charges[0]), "events": int(charges[1]),
            "slices_left": int(slices[0]), "escrow_rows_left": int(holds[0])}  # fmt: skip


async def _measure(servers: dict[str, list[_Server]], clients: int, duration: float) -> dict[str, Any]:
    first = next(iter(servers.values()))[0].target
    keys = await _setup_keys(first, clients)
    for group in servers.values():  # warm-up: pools, prepared statements, first slices
        await _load([s.target for s in group], keys, 8, min(1.0, duration / 2))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    for _ in range(2):
        for name, group in servers.items():
            runs[name].append(await _load_cpu(group, keys, clients, duration / 2))
    return {name: _merge(rows) for name, rows in runs.items()}


def run(replicas: int, duration: float, clients: int, postgres_dsn: str) -> dict[str, Any]:
    schema = _create_schema(postgres_dsn)
    sep = "&" if "?" in postgres_dsn else "?"
    base: dict[str, Any] = {"backend": "postgres", "admin_token": ADMIN,
                            "postgres_dsn": f"{postgres_dsn}{sep}options=-csearch_path%3D{schema}"}  # fmt: skip
    servers: dict[str, list[_Server]] = {}
    try:
        servers["single"] = [_Server("ledger", base)]
        servers["escrow_1"] = [_Server("ledger", {**base, "escrow": True})]
        servers[f"escrow_{replicas}"] = [servers["escrow_1"][0]] + [
            _Server("ledger", {**base, "escrow": True}) for _ in range(replicas - 1)
        ]
        results = asyncio.run(_measure(servers, clients, duration))
    finally:
        stopped: set[int] = set()
        for group in servers.values():
            for srv in group:
                if id(srv) not in stopped:  # a stopped ledger settles and returns its slices
                    srv.stop()
                    stopped.add(id(srv))
    try:
        books = _check_books(base["postgres_dsn"])
    finally:
        _drop_schema(postgres_dsn, schema)
    single = results["single"]["pairs_per_s"]
    scaled = results[f"escrow_{replicas}"]["pairs_per_s"]
    ratio = round(scaled / single, 2) if single else 0.0
    return {"bench": "ledger_replicas", "replicas": replicas, "clients": clients, "duration_s": duration,
            "cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2), **results,
            f"ratio_escrow_{replicas}_to_single": ratio, "target_ratio_ge_3": ratio >= 3.0, "books": books,
            "books_balance": books["spent"] == books["charges"] and books["slices_left"] == 0}  # fmt: skip


def main(json_out: bool, replicas: int, duration: float, clients: int, postgres_dsn: str) -> None:
    import json

    result = run(replicas, duration, clients, postgres_dsn)
    if json_out:
        print(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ledger replicas on one hot budget, PostgreSQL, {clients} clients ({duration:g}s each)")
    for col in ("target", "pairs/s", "ledger CPU ms/pair", "pair p50 ms", "pair p99 ms"):
        table.add_column(col, justify="right")
    for name in ("single", "escrow_1", f"escrow_{replicas}"):
        row = result[name]
        table.add_row(name, f"{row['pairs_per_s']:.0f}", f"{row['ledger_cpu_ms_per_pair']:.2f}",
                      f"{row['pair_p50_ms']:.2f}", f"{row['pair_p99_ms']:.2f}")  # fmt: skip
    Console().print(table)
    Console().print({k: result[k] for k in (f"ratio_escrow_{replicas}_to_single", "target_ratio_ge_3",
                                             "books_balance", "books", "loadavg_1m")})  # fmt: skip
