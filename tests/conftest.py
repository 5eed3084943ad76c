"""Shared fixtures for integration and end-to-end tests."""

from __future__ import annotations

import os

# Nothing may reach a model hub during tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# --- frontier: a real OpenAI-compatible server (llama_cpp.server + SmolLM2) ---
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# The log-secrets check (tests/logcheck.py): in-process services log at DEBUG
# into the session's temp dir, and every *.log there is scanned at the end for
# keys, bearer tokens and the prompts tests registered with `sensitive`.
from logcheck import _services_log_at_debug, pytest_sessionfinish, pytest_sessionstart, service_log  # noqa: F401


@pytest.fixture(scope="session")
def frontier_base_url() -> Iterator[str]:
    from rationer.replay.frontier_sim import openai_compatible_server

    with openai_compatible_server() as base:
        yield base


# ---- PostgreSQL and Redis (added with the ledger; any service may use them) ----
import uuid  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import pytest  # noqa: E402

PG_BASE_DSN = os.environ.get("RATIONER_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("RATIONER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class PgSchema:
    """A fresh schema in the shared test database; ``dsn`` makes it the search_path.

    ``application_name`` is unique too, so a test can find (and terminate) exactly
    its own backend connections without touching anyone else's.
    """

    schema: str
    dsn: str
    base_dsn: str

    @property
    def application_name(self) -> str:
        return self.schema


@contextmanager
def _fresh_pg_schema() -> Iterator[PgSchema]:
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        with psycopg.connect(PG_BASE_DSN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed at {PG_BASE_DSN} (run scripts/ensure-backing-services): {exc}")
    yield PgSchema(schema, f"{PG_BASE_DSN}?options=-csearch_path%3D{schema}&application_name={schema}",
                   PG_BASE_DSN)
    with psycopg.connect(PG_BASE_DSN, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (schema,)
        )
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_schema() -> Iterator[PgSchema]:
    with _fresh_pg_schema() as s:
        yield s


@pytest.fixture(scope="module")
def pg_schema_module() -> Iterator[PgSchema]:
    """The same, shared by a module's tests (for module-scoped stacks)."""
    with _fresh_pg_schema() as s:
        yield s


@pytest.fixture
def pg_dsn(pg_schema: PgSchema) -> str:
    """DSN of a clean, empty PostgreSQL schema private to this test."""
    return pg_schema.dsn


@pytest.fixture
def redis_url() -> str:
    return REDIS_TEST_URL


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix private to this test; its keys are deleted afterwards."""
    import redis

    prefix = f"test:{uuid.uuid4().hex[:16]}:"
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis is needed at {REDIS_TEST_URL} (run scripts/ensure-backing-services): {exc}")
    yield prefix
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
