"""``rationer cluster up``: every service as several real ``rationer serve`` processes on loopback.

2 routers (gRPC clients balance per call over ``ipv4:a,b``; the HTTP doors
sit behind ``rationer.balancer``), 2 ledgers on one PostgreSQL database with
Redis rate limits, 2 caches, 3 SmolLM2 workers, all from one generated
``gateway.toml`` (rationer/cluster/config.py). Like ``rationer up``, a child
that dies is restarted with backoff, so a router killed with ``kill -9``
comes back and replays its own settlement journal.

``running_cluster(opts)`` is the library form the cluster test uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import tomli_w

from rationer.balancer import TcpBalancer
from rationer.cluster.backing import check_postgres, check_redis, cluster_database, ensure_database
from rationer.cluster.config import ClusterOptions, addresses, build_config, replicas, router_target
from rationer.cluster.vectors import CacheVectors, cache_vectors
from rationer.platform.ports import port_busy_error, port_in_use, split_host_port
from rationer.platform.secrets import private_dir, write_private
from rationer.up import Child, Supervisor, admin_token, service_token, wait_serving

START_TIMEOUT_S = 300.0


class ClusterSupervisor(Supervisor):
    """``rationer up``'s supervisor (restart with backoff, ordered stop) over the cluster's replicas."""

    def __init__(self, opts: ClusterOptions, database: str, cache_pg_dsn: str = "") -> None:  # not super()
        self.cluster = opts
        self.database = database
        private_dir(opts.data_dir)
        private_dir(opts.data_dir / "logs")
        admin_token(opts.data_dir)
        self.config_path = opts.data_dir / "gateway.toml"
        write_private(self.config_path, tomli_w.dumps(build_config(opts, database, cache_pg_dsn)))
        token = {"RATIONER_SERVICE_TOKEN": service_token(opts.data_dir)}
        self.children = [
            Child(r.name, r.service, r.address, self.config_path, opts.data_dir / "logs" / f"{r.name}.log",
                  env={**token, **r.env}, base_env=opts.base_env)
            for r in replicas(opts)
        ]  # fmt: skip

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    async def start(self) -> None:
        """Backends at once (their start-up overlaps), then the routers, which need them."""
        backends = [c for c in self.children if c.service != "router"]
        routers = [c for c in self.children if c.service == "router"]
        for group in (backends, routers):
            for child in group:
                child.start()
            waits = [asyncio.ensure_future(wait_serving(c.address, START_TIMEOUT_S, c)) for c in group]
            try:
                await asyncio.gather(*waits)
            finally:
                for w in waits:
                    w.cancel()

    async def credentials(self) -> dict[str, str]:
        """Admin and demo credentials in <data>/credentials.json, made on first start."""
        path = self.cluster.data_dir / "credentials.json"
        if path.exists():
            loaded: dict[str, str] = json.loads(path.read_text())
            return loaded
        from services.ledger.admin_client import LedgerAdminClient
        from services.ledger.bootstrap import bootstrap_demo

        token = admin_token(self.cluster.data_dir)
        ledger = addresses(self.cluster, "ledger")[0]
        demo = await bootstrap_demo(ledger, token)
        async with LedgerAdminClient(ledger, token) as admin:
            admin_key = await admin.create_key(team_id=demo.team_id, service_account="ops", admin=True, name="admin")
        creds = {"admin_token": token, "admin_api_key": admin_key.secret, "demo_api_key": demo.api_key,
                 "demo_key_id": demo.key_id, "org_id": demo.org_id, "team_id": demo.team_id}  # fmt: skip
        write_private(path, json.dumps(creds, indent=2))
        return creds


@dataclass
class Cluster:
    opts: ClusterOptions
    supervisor: ClusterSupervisor
    balancer: TcpBalancer
    creds: dict[str, str]
    database: str
    vectors: CacheVectors

    @property
    def router(self) -> str:
        """The gRPC target over both routers (round robin per call)."""
        return router_target(self.opts)

    @property
    def http_base_url(self) -> str:
        return f"http://{self.opts.host}:{self.opts.http_port}/v1"

    def addresses(self, kind: str) -> list[str]:
        return addresses(self.opts, kind)

    def kill(self, name: str) -> int:
        """``kill -9`` one replica (the supervisor restarts it); returns its pid."""
        proc = self.supervisor.child(name).proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return proc.pid


def check_ports(opts: ClusterOptions) -> None:
    wanted = [(r.name, split_host_port(r.address)[1]) for r in replicas(opts)]
    wanted += [(f"router{i} HTTP", split_host_port(a)[1]) for i, a in enumerate(addresses(opts, "http"))]
    wanted.append(("balanced HTTP", opts.http_port))
    for name, port in wanted:
        if port_in_use(opts.host, port):
            raise port_busy_error(port, name, "is another `rationer cluster up` running? stop it, or pass "
                                  f"--base-port {opts.base_port + 100} --http-port {opts.http_port + 100}")  # fmt: skip


async def prepare(opts: ClusterOptions) -> str:
    """Reachable PostgreSQL and Redis, free ports, the cluster's database: its name."""
    await check_postgres(opts.postgres_dsn)
    await check_redis(opts.redis_url)
    check_ports(opts)
    private_dir(opts.data_dir)
    database = cluster_database(opts.data_dir, opts.database)
    await ensure_database(opts.postgres_dsn, database)
    return database


@asynccontextmanager
async def running_cluster(opts: ClusterOptions) -> AsyncIterator[Cluster]:
    """Start every replica and the HTTP balancer, restart any that dies, stop them all on exit."""
    database = await prepare(opts)
    with contextlib.ExitStack() as servers:
        vectors = await cache_vectors(opts, database, servers)
        sup = ClusterSupervisor(opts, database, vectors.dsn)
        balancer = TcpBalancer(addresses(opts, "http"))
        stop = asyncio.Event()
        watching: asyncio.Future[None] | None = None
        try:
            await sup.start()
            await balancer.start(opts.host, opts.http_port)
            creds = await sup.credentials()
            watching = asyncio.ensure_future(sup.supervise(stop))
            yield Cluster(opts, sup, balancer, creds, database, vectors)
        finally:
            stop.set()
            if watching is not None:
                await watching
            await balancer.close()
            await asyncio.to_thread(sup.stop)


def banner(cluster: Cluster) -> str:
    o, key = cluster.opts, cluster.creds["demo_api_key"]
    dd = f" --data-dir {o.data_dir}"
    return f"""
Rationer cluster is up ({o.routers} routers, {o.ledgers} ledgers, {o.caches} caches, {o.workers} workers).
  gRPC (round robin over the routers): {cluster.router}
  HTTP (balanced, OpenAI-compatible) : {cluster.http_base_url}
  ledgers : {", ".join(cluster.addresses("ledger"))}  (PostgreSQL database {cluster.database}, Redis {o.redis_url})
  caches  : {", ".join(cluster.addresses("cache"))}  ({cluster.vectors.where})
  workers : {", ".join(cluster.addresses("worker"))}
  data    : {o.data_dir.resolve()}  (logs in logs/, credentials in credentials.json)
  demo key: {key}
Try it from another shell in this directory:
  ./scripts/rationer{dd} chat --address {cluster.router} "Write a one-line thank-you note"
  ./scripts/rationer{dd} report chargeback --ledger {cluster.addresses("ledger")[0]}
  curl -s {cluster.http_base_url}/chat/completions -H 'authorization: Bearer {key}' \\
       -H 'content-type: application/json' \\
       -d '{{"model":"auto","messages":[{{"role":"user","content":"hi"}}]}}'
A replica that dies is restarted (try `kill -9` on one: see logs/). Ctrl-C stops every process.
"""


async def _serve(opts: ClusterOptions, stop: asyncio.Event) -> None:
    async with running_cluster(opts) as cluster:
        print(banner(cluster), flush=True)
        await stop.wait()


async def run_cluster_up(opts: ClusterOptions) -> None:
    """Run until Ctrl-C or SIGTERM, also during start-up (the children are stopped either way)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.ensure_future(_serve(opts, stop))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not serving.done():
        serving.cancel()
    stopping.cancel()
    with suppress(asyncio.CancelledError):
        await serving
    print("Rationer cluster stopped.", flush=True)
