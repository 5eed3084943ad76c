"""``rationer cluster up``: several replicas of every service on loopback (docs/deploy.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rationer.cli.main import CliGroups


def up(
    data_dir: Annotated[Path, typer.Option(help="State, logs and credentials.")] = Path(".rationer-cluster"),
    base_port: Annotated[int, typer.Option(help="First port: routers +0, ledgers +10, caches +20, workers +30, "
                                                "router HTTP doors +40.")] = 7500,
    http_port: Annotated[int, typer.Option(help="The balanced OpenAI-compatible HTTP port.")] = 8090,
    routers: Annotated[int, typer.Option(min=1, max=9)] = 2,
    ledgers: Annotated[int, typer.Option(min=1, max=9)] = 2,
    caches: Annotated[int, typer.Option(min=1, max=9)] = 2,
    workers: Annotated[int, typer.Option(min=1, max=9)] = 3,
    worker_threads: Annotated[int, typer.Option(min=1, help="llama.cpp threads per worker.")] = 1,
    postgres_dsn: Annotated[str, typer.Option(envvar="RATIONER_CLUSTER_POSTGRES_DSN",
                                              help="PostgreSQL server; the cluster creates its own database.")] = (
        "postgresql://postgres@127.0.0.1:5432/test"
    ),
    database: Annotated[str, typer.Option(help="Database name (default: a fresh rationer_cluster_<hex>, "
                                               "remembered in <data-dir>/cluster.json).")] = "",
    redis_url: Annotated[str, typer.Option(envvar="RATIONER_CLUSTER_REDIS_URL", help="Redis for rate limits.")] = (
        "redis://127.0.0.1:6379/0"
    ),
    cache_pg_dsn: Annotated[str, typer.Option(envvar="RATIONER_CLUSTER_CACHE_PG_DSN",
                                              help="PostgreSQL with pgvector for the shared cache (default: the "
                                                   "ledger's server if it has pgvector, else a private one).")] = "",
    frontier_url: Annotated[str, typer.Option(envvar="RATIONER_FRONTIER_BASE_URL",
                                              help="OpenAI-compatible base URL (a frontier tier).")] = "",
    frontier_model: Annotated[str, typer.Option(envvar="RATIONER_FRONTIER_MODEL")] = "gpt-4o",
    log_format: Annotated[str, typer.Option(help="console or json")] = "console",
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML merged over the generated one.")] = None,
) -> None:
    """Run 2 routers, 2 ledgers (PostgreSQL + Redis), 2 caches and 3 workers as separate processes."""
    import asyncio

    from rationer.cluster.config import ClusterOptions
    from rationer.cluster.supervisor import run_cluster_up
    from rationer.platform.settings import read_toml

    opts = ClusterOptions(
        data_dir=data_dir, base_port=base_port, http_port=http_port, routers=routers, ledgers=ledgers,
        caches=caches, workers=workers, worker_threads=worker_threads, postgres_dsn=postgres_dsn,
        database=database, redis_url=redis_url, cache_pg_dsn=cache_pg_dsn, frontier_url=frontier_url,
        frontier_model=frontier_model,
        log_format=log_format, base_env=dict(os.environ), overrides=read_toml(config),
    )  # fmt: skip
    asyncio.run(run_cluster_up(opts))


def balance(
    route: Annotated[list[str], typer.Option("--route", help="LISTEN=UPSTREAM[,UPSTREAM...], e.g. "
                                             "0.0.0.0:8080=router:8080 (names re-resolved per connection).")],
) -> None:  # fmt: skip
    """Round-robin TCP balancer in front of router replicas (compose's `gateway`); runs until SIGTERM."""
    import asyncio

    from rationer.balancer import run_balancers

    asyncio.run(run_balancers(route))


def register(groups: CliGroups) -> None:
    cluster = typer.Typer(help="Several replicas of every service on loopback.", no_args_is_help=True)
    cluster.command("up")(up)
    cluster.command("balance")(balance)
    groups.root.add_typer(cluster, name="cluster")
