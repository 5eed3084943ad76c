"""Issue 16's proof on loopback: the cluster of ``rationer cluster up``, as separate processes.

2 routers (round robin per call over ``ipv4:a,b``), 2 ledgers on one
PostgreSQL database with Redis rate limits, 2 caches, 3 SmolLM2 workers, a
frontier tier on the instant OpenAI-compatible upstream (deterministic: same
text and usage for every call). Then:

- a replay's totals equal the ledger's to the nano-dollar, every served
  request billed exactly once;
- ``kill -9`` of one replica of each service during a replay: no
  acknowledged request unbilled, nothing billed twice, only requests in
  flight at a kill fail, and no hold outlives its TTL (held = 0 after TTL +
  sweep);
- the caches share one pgvector schema (testsupport.pgvector): the same
  cost and quality totals as single-node ``rationer up`` on the same trace,
  and an answer stored through one router is a hit through the other.

The trace size comes from ``RATIONER_CLUSTER_REQUESTS`` (default small);
``./scripts/check-long`` runs it bigger (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from rationer.client import AsyncClient
from rationer.cluster.backing import drop_database
from rationer.cluster.config import ClusterOptions, balanced_target
from rationer.cluster.supervisor import Cluster, running_cluster
from rationer.platform.net import free_port, free_port_block
from rationer.platform.ports import port_in_use
from rationer.replay.driver import Record
from rationer.replay.provision import KeyBook
from rationer.replay.runner import ReplayConfig, run_replay
from rationer.replay.selfhost import overrides as selfhost_overrides
from rationer.replay.summary import request_of, summarize
from rationer.replay.synth import SynthConfig, load_pools, synthesize
from rationer.replay.trace import Trace
from rationer.up import Supervisor, UpOptions, admin_token, ports, wait_serving
from services.ledger.admin_client import LedgerAdminClient
from testsupport.pgvector import PgvectorServer
from testsupport.upstream import instant_frontier

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(600)]

REQUESTS = int(os.environ.get("RATIONER_CLUSTER_REQUESTS", "20"))
HOLD_TTL_S, SWEEP_S = 6.0, 1.0
THINK_S = 0.25


def trace(requests: int, seed: int) -> Trace:
    # Every line at temperature 0 (sampled_share=0): the same prompt gets the same tokens on any worker.
    header, lines = synthesize(SynthConfig(requests=requests, seed=seed, repeat_rate=0.35, sampled_share=0.0,
                                           max_tokens=6), load_pools(None))  # fmt: skip
    return Trace(header, tuple(lines))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def frontier() -> AsyncIterator[str]:
    async with instant_frontier() as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cluster(
    tmp_path_factory: pytest.TempPathFactory, frontier: str, pgvector: PgvectorServer
) -> AsyncIterator[Cluster]:
    opts = ClusterOptions(data_dir=tmp_path_factory.mktemp("cluster"), base_port=free_port_block(50),
                          http_port=free_port(), reservation_ttl_s=HOLD_TTL_S, sweep_interval_s=SWEEP_S,
                          cache_pg_dsn=pgvector.dsn, frontier_url=frontier, log_format="json",
                          base_env=dict(os.environ))  # fmt: skip
    async with running_cluster(opts) as running:
        assert running.vectors.dsn == pgvector.dsn  # both caches on one pgvector schema
        yield running
    await drop_database(opts.postgres_dsn, running.database)


def replay_config(cluster: Cluster, tmp: Path, concurrency: int, think_s: float = 0.0) -> ReplayConfig:
    return ReplayConfig(address=cluster.router, ledger=balanced_target(cluster.addresses("ledger")),
                        concurrency=concurrency, admin_token=cluster.creds["admin_token"], provision=True,
                        keys_path=tmp / "keys.json", driver_check=False, settle_timeout_s=120.0,
                        think_s=think_s)  # fmt: skip


async def ledger_events(cluster: Cluster, org_ids: set[str]) -> list[Any]:
    async with LedgerAdminClient(balanced_target(cluster.addresses("ledger")), cluster.creds["admin_token"]) as a:
        return [e for e in await a.list_events() if e.org_id in org_ids and e.kind in ("charge", "cache_hit")]


def billed_once(records: list[dict[str, Any]], events: list[Any]) -> dict[str, int]:
    """Usage events per router request id; asserts none is billed twice and every served one once."""
    per: dict[str, int] = {}
    for e in events:
        per[request_of(e.request_id)] = per.get(request_of(e.request_id), 0) + 1
    assert all(n == 1 for n in per.values()), {k: n for k, n in per.items() if n > 1}
    assert all(per.get(r["request_id"]) == 1 for r in records if r["status"] == "ok")
    return per


async def test_replay_through_the_cluster_matches_the_ledger(cluster: Cluster, tmp_path: Path) -> None:
    result = await run_replay(trace(REQUESTS, seed=5), replay_config(cluster, tmp_path, concurrency=4))
    records = result["records"]
    assert all(r["status"] in ("ok", "denied") for r in records), [r["error"] for r in records if r["error"]]
    check = result["ledger"]["check"]
    assert check["match"] is True, check
    assert check["replay_cost_nano_usd"] == check["ledger_cost_nano_usd"] > 0
    events = await ledger_events(cluster, set(result["run"]["org_ids"].values()))
    assert len(billed_once(records, events)) == sum(r["status"] == "ok" for r in records)
    assert "local-small" in {r["tier"] for r in records if r["status"] == "ok"}


class KillPlan:
    """Kills one replica of each service as the replay passes given points, noting what was in flight."""

    def __init__(self, cluster: Cluster, at: dict[int, str]) -> None:
        self.cluster, self.at = cluster, at
        self.started: set[str] = set()
        self.done: set[str] = set()
        self.kills: list[tuple[str, int, float]] = []  # (replica, in flight, monotonic time)

    def on_start(self, rec: Record) -> None:
        self.started.add(rec.request_id)

    def on_done(self, rec: Record) -> None:
        self.done.add(rec.request_id)
        victim = self.at.get(len(self.done))
        if victim is not None:
            flying = self.started - self.done
            self.cluster.kill(victim)
            self.kills.append((victim, len(flying), time.monotonic()))


async def held_after_ttl(cluster: Cluster, book: KeyBook, since: float) -> dict[str, int]:
    """Each run budget's ``held``, once TTL + two sweeps have passed since the last kill."""
    await asyncio.sleep(max(0.0, since + HOLD_TTL_S + 2 * SWEEP_S - time.monotonic()))
    scopes = set(book.org_ids.values()) | {k.team_id for k in book.keys.values()}
    async with LedgerAdminClient(balanced_target(cluster.addresses("ledger")), cluster.creds["admin_token"]) as a:
        return {b.id: b.held for b in await a.list_budgets() if b.scope.id in scopes}


async def test_kill_9_of_one_replica_of_each_service_loses_and_double_bills_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    n = max(REQUESTS, 24)
    step = n // 6
    plan = KillPlan(cluster, {step: "router0", 2 * step: "ledger0", 3 * step: "cache0", 4 * step: "worker0"})
    result = await run_replay(trace(n, seed=11), replay_config(cluster, tmp_path, concurrency=4),
                              on_done=plan.on_done, on_start=plan.on_start)  # fmt: skip
    records = result["records"]
    assert [v for v, _, _ in plan.kills] == ["router0", "ledger0", "cache0", "worker0"]
    failed = {r["request_id"] for r in records if r["status"] == "error"}
    # The replay completed, failing no more calls than were in flight at the kills (the client
    # retries nothing). Not necessarily the same calls: one sent in the instant between a router's
    # death and its client noticing the closed connection fails in place of one that finished.
    assert len(records) == n and len(failed) <= sum(k for _, k, _ in plan.kills), [r["error"] for r in records]
    assert all(r["error"].startswith("UNAVAILABLE") for r in records if r["status"] == "error")
    # Every acknowledged request billed exactly once, none twice (a failed one at most once).
    per = billed_once(records, await ledger_events(cluster, set(result["run"]["org_ids"].values())))
    assert set(per) <= {r["request_id"] for r in records if r["status"] == "ok"} | failed
    # No hold outlives its TTL: the surviving ledger sweeps the orphans of the killed replicas.
    held = await held_after_ttl(cluster, KeyBook.load(tmp_path / "keys.json"), plan.kills[-1][2])
    assert held and all(h == 0 for h in held.values()), held
    # The supervisor brought every killed replica back.
    for victim, _, _ in plan.kills:
        await wait_serving(cluster.supervisor.child(victim).address, 180)


async def test_an_answer_stored_through_one_router_is_a_hit_through_the_other(cluster: Cluster) -> None:
    prompt = f"Name the capital of France in one word ({os.urandom(4).hex()})."
    r0, r1 = cluster.addresses("router")
    for router in (r0, r1):  # one may be coming back from the kill test
        await wait_serving(router, 180)
    key = cluster.creds["demo_api_key"]
    async with AsyncClient(r0, key) as first:
        miss = await first.complete(prompt, max_tokens=6, temperature=0.0)
    assert not miss.route.cache_hit
    deadline = time.monotonic() + 10
    while True:  # the router stores the answer off the response path
        async with AsyncClient(r1, key) as second:
            again = await second.complete(prompt, max_tokens=6, temperature=0.0)
        if again.route.cache_hit or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert again.route.cache_hit and again.text == miss.text


def totals(result: dict[str, Any]) -> dict[str, Any]:
    s = summarize(result)
    gw = s["policies"]["gateway"]
    return {"cost_nano_usd": gw["cost_nano_usd"], "quality": gw["quality"], "status": s["status"],
            "tier_mix": s["tier_mix"], "cache_hits": s["cache"]["hits"]}  # fmt: skip


async def test_the_cluster_gives_the_single_node_totals(cluster: Cluster, frontier: str, tmp_path: Path) -> None:
    tr = trace(REQUESTS, seed=7)
    # Concurrency 1 with a pause after each answer: the router's off-path store and commit land
    # before the next call, so every cache hit and budget figure is the trace's own.
    on_cluster = await run_replay(tr, replay_config(cluster, tmp_path, concurrency=1, think_s=THINK_S))
    # `rationer up` with the cluster's tiers: SmolLM2 local-small, the same frontier.
    opts = UpOptions(data_dir=tmp_path / "single", base_port=free_port_block(4), http_port=free_port(),
                     worker_threads=1, frontier_url=frontier, log_format="json", base_env=dict(os.environ),
                     overrides=selfhost_overrides(1, frontier))  # fmt: skip
    single = Supervisor(opts)
    try:
        await single.start()
        cfg = ReplayConfig(address=f"127.0.0.1:{ports(opts)['router']}", ledger=f"127.0.0.1:{ports(opts)['ledger']}",
                           concurrency=1, admin_token=admin_token(opts.data_dir), provision=True,
                           driver_check=False, think_s=THINK_S)  # fmt: skip
        on_single = await run_replay(tr, cfg)
    finally:
        await asyncio.to_thread(single.stop)
    assert totals(on_cluster) == totals(on_single)
    for result in (on_cluster, on_single):
        check = result["ledger"]["check"]
        assert check["match"] and check["ledger_cost_nano_usd"] == totals(on_cluster)["cost_nano_usd"]


async def test_the_command_prints_its_banner_and_stops_on_sigterm(tmp_path: Path, pgvector: PgvectorServer) -> None:
    """The newcomer's command, as a process (one replica each to keep it short): banner, SIGTERM, exit 0."""
    base = free_port_block(50)
    data = tmp_path / "data"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rationer.cli.main", "cluster", "up", "--data-dir", str(data),
        "--base-port", str(base), "--http-port", str(free_port()), "--routers", "1", "--ledgers", "1",
        "--caches", "1", "--workers", "1", "--cache-pg-dsn", pgvector.dsn, "--log-format", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        out = b""
        while b"Ctrl-C stops every process" not in out:
            line = await asyncio.wait_for(proc.stdout.readline(), 300)
            assert line, f"exited early: {out.decode()}"
            out += line
        banner = out.decode()
        assert f"127.0.0.1:{base}" in banner and "demo key: rk-" in banner and "pgvector (--cache-pg-dsn)" in banner
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0 and b"Rationer cluster stopped." in rest[0]
    # Every child went with it: their ports are free again.
    assert not any(port_in_use("127.0.0.1", base + off) for off in (0, 10, 20, 30, 40))
    database = json.loads((data / "cluster.json").read_text())["database"]
    await drop_database(ClusterOptions().postgres_dsn, database)
