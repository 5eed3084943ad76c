"""PostgreSQL and Redis for the cluster: reachable or one clear error, and a database of its own.

Each cluster gets a fresh database on the server (``rationer_cluster_<hex>``),
named in ``<data>/cluster.json`` so the next start of the same data
directory finds its keys and budgets again. Rate limits share the Redis
server under a prefix with the database's name.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

from rationer.errors import InvalidArgument, Unavailable
from rationer.platform.secrets import write_private

NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _server_hint(dsn: str) -> str:
    # Never echo a password that a DSN may carry.
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", dsn)


async def check_postgres(dsn: str, timeout_s: float = 3.0) -> None:
    import psycopg

    try:
        conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=max(1, int(timeout_s)), autocommit=True)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Unavailable(f"PostgreSQL at {_server_hint(dsn)} is unreachable ({first}); start it or pass "
                          "--postgres-dsn postgresql://USER@HOST:PORT/DB") from None  # fmt: skip
    await conn.close()


async def check_redis(url: str, timeout_s: float = 3.0) -> None:
    import redis.asyncio as redis
    from redis.exceptions import RedisError

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        raise Unavailable(f"Redis at {_server_hint(url)} is unreachable ({exc}); start it or pass "
                          "--redis-url redis://HOST:6379/0") from None  # fmt: skip
    finally:
        await client.aclose()


async def ensure_database(server_dsn: str, name: str) -> None:
    """Create database ``name`` on the server ``server_dsn`` connects to, unless it exists."""
    import psycopg

    if not NAME.match(name):
        raise InvalidArgument(f"database name {name!r} must be lower-case letters, digits and _")
    async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if await cur.fetchone() is None:
            await conn.execute(f'CREATE DATABASE "{name}"')  # name checked above; DDL takes no parameters


async def drop_database(server_dsn: str, name: str) -> None:
    import psycopg

    if not NAME.match(name):
        raise InvalidArgument(f"database name {name!r} must be lower-case letters, digits and _")
    async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cluster_database(data_dir: Path, wanted: str) -> str:
    """The cluster's database: ``wanted``, the one this data directory used before, or a fresh name."""
    state = data_dir / "cluster.json"
    known = ""
    if state.exists():
        try:
            known = str(json.loads(state.read_text()).get("database", ""))
        except ValueError:
            known = ""
    name = wanted or known or f"rationer_cluster_{secrets.token_hex(4)}"
    if name != known:
        write_private(state, json.dumps({"database": name}))
    return name
