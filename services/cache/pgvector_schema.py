"""The shared backend's tables and statements (PostgreSQL with pgvector).

One ``entries`` table for every tenant, with a pgvector HNSW index on the
(unit-length) vectors by inner product. Isolation is in every statement:
each read and each delete names its tenant (``WHERE tenant = ...``), so no
index, plan or bug in the ANN search can hand one tenant's row to another.
``last_used`` is deliberately not indexed: a hit then updates its row in
place (a HOT update) instead of writing a new HNSW entry; LRU eviction sorts
the tenant's rows only when the tenant is over its capacity.
"""

from __future__ import annotations

import re

from psycopg import sql

from rationer.embedding import DIM
from rationer.errors import InvalidArgument

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

COLS = (
    "id, entry_id, tenant, ctx, text, answer, model, tier, created_at, saved_nano_usd, "
    "prompt_tokens, completion_tokens, expires_at"
)

_DDL = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.entries (
    id BIGSERIAL PRIMARY KEY,
    entry_id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    ctx TEXT NOT NULL,
    exact TEXT NOT NULL,
    text TEXT NOT NULL,
    vector vector({dim}) NOT NULL,
    answer TEXT NOT NULL,
    model TEXT NOT NULL,
    tier TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    saved_nano_usd BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    last_used DOUBLE PRECISION NOT NULL
) WITH (fillfactor = 70);
CREATE UNIQUE INDEX IF NOT EXISTS entries_key ON {s}.entries (tenant, ctx, exact);
CREATE INDEX IF NOT EXISTS entries_tenant_expiry ON {s}.entries (tenant, expires_at);
CREATE INDEX IF NOT EXISTS entries_expiry ON {s}.entries (expires_at);
CREATE INDEX IF NOT EXISTS entries_vector ON {s}.entries USING hnsw (vector vector_ip_ops)
    WITH (m = {m}, ef_construction = {ef_construction});
CREATE TABLE IF NOT EXISTS {s}.tenants (tenant TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS {s}.receipts (
    tenant TEXT NOT NULL,
    request_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    reported BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (tenant, request_id)
);
CREATE INDEX IF NOT EXISTS receipts_at ON {s}.receipts (at);
"""


def schema_name(name: str) -> str:
    if not _SCHEMA_NAME.match(name):
        raise InvalidArgument(
            f"cache pg_schema {name!r} must be a lower-case SQL identifier (letters, digits, _; at most 63)"
        )
    return name


class Statements:
    """Every statement of the backend, with the schema name bound in."""

    def __init__(self, schema: str, *, hnsw_m: int = 16, ef_construction: int = 64) -> None:
        s = sql.Identifier(schema_name(schema))
        self.ddl = sql.SQL(_DDL).format(
            s=s, dim=sql.Literal(DIM), m=sql.Literal(hnsw_m), ef_construction=sql.Literal(ef_construction)
        )
        e, t, r = (sql.SQL("{}." + name).format(s) for name in ("entries", "tenants", "receipts"))
        cols = sql.SQL(COLS)

        def q(text: str) -> sql.Composed:
            return sql.SQL(text).format(e=e, t=t, r=r, cols=cols)

        self.insert = q(
            "INSERT INTO {e} (entry_id, tenant, ctx, exact, text, vector, answer, model, tier, created_at, "
            "saved_nano_usd, prompt_tokens, completion_tokens, expires_at, last_used) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (tenant, ctx, exact) DO UPDATE SET entry_id = EXCLUDED.entry_id, text = EXCLUDED.text, "
            "vector = EXCLUDED.vector, answer = EXCLUDED.answer, model = EXCLUDED.model, tier = EXCLUDED.tier, "
            "created_at = EXCLUDED.created_at, saved_nano_usd = EXCLUDED.saved_nano_usd, "
            "prompt_tokens = EXCLUDED.prompt_tokens, completion_tokens = EXCLUDED.completion_tokens, "
            "expires_at = EXCLUDED.expires_at, last_used = EXCLUDED.last_used"
        )
        self.add_tenant = q("INSERT INTO {t} (tenant) VALUES (%s) ON CONFLICT DO NOTHING")
        self.has_tenant = q("SELECT 1 FROM {t} WHERE tenant = %s")
        self.exact = q("SELECT {cols} FROM {e} WHERE tenant = %s AND ctx = %s AND exact = %s AND expires_at > %s")
        self.search = q(
            "SELECT {cols}, -(vector <#> %(v)s) AS sim FROM {e} "
            "WHERE tenant = %(tenant)s AND ctx = %(ctx)s AND expires_at > %(now)s "
            "ORDER BY vector <#> %(v)s LIMIT %(k)s"
        )
        self.touch = q("UPDATE {e} SET last_used = %s WHERE entry_id = %s AND last_used < %s")
        self.by_entry_id = q("SELECT {cols} FROM {e} WHERE entry_id = %s")
        self.remove = q("DELETE FROM {e} WHERE tenant = %s AND entry_id = ANY(%s)")
        self.remove_tenant = q("DELETE FROM {e} WHERE tenant = %s")
        self.remove_all = q("DELETE FROM {e}")
        self.remove_expired = q("DELETE FROM {e} WHERE id IN (SELECT id FROM {e} WHERE expires_at <= %s LIMIT %s)")
        self.remove_expired_tenant = q(
            "DELETE FROM {e} WHERE id IN (SELECT id FROM {e} WHERE tenant = %s AND expires_at <= %s LIMIT %s)"
        )
        self.count = q("SELECT count(*) FROM {e}")
        self.count_tenant = q("SELECT count(*) FROM {e} WHERE tenant = %s")
        self.tenant_count = q("SELECT count(DISTINCT tenant) FROM {e}")
        self.save_receipt = q(
            "INSERT INTO {r} (tenant, request_id, key_id, entry_id, at, reported) VALUES (%s, %s, %s, %s, %s, false) "
            "ON CONFLICT (tenant, request_id) DO UPDATE SET key_id = EXCLUDED.key_id, entry_id = EXCLUDED.entry_id, "
            "at = EXCLUDED.at, reported = false"
        )
        self.prune_receipts = q("DELETE FROM {r} WHERE at < %s")
        self.load_receipt = q("SELECT key_id, entry_id, at, reported FROM {r} WHERE tenant = %s AND request_id = %s")
        self.mark_reported = q("UPDATE {r} SET reported = true WHERE tenant = %s AND request_id = %s AND NOT reported")
        self.evict = q(
            "DELETE FROM {e} WHERE id IN (SELECT id FROM {e} WHERE tenant = %s ORDER BY last_used ASC, id ASC LIMIT %s)"
        )
