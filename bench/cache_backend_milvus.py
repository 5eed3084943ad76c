"""Milvus Lite, the other shared-backend candidate, measured on the same data (``--milvus``).

Only the engine is measured (no Rationer backend is built on it): insert
throughput, and top-4 search restricted to one tenant (``filter tenant ==``)
with HNSW on inner product, as the pgvector backend searches. Then whether a
second process can open the same Milvus Lite database, which two cache
replicas on one machine would need. Needs ``pip install -e .[milvus]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
_BATCH = 5000


def run(data: dict[str, Vectors], queries: dict[str, tuple[Any, Vectors]]) -> dict[str, Any]:
    from pymilvus import DataType, MilvusClient

    with tempfile.TemporaryDirectory(prefix="rationer-milvus-") as tmp:
        path = os.path.join(tmp, "cache.db")
        client = MilvusClient(path)
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("tenant", DataType.VARCHAR, max_length=128)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=next(iter(data.values())).shape[1])
        index = client.prepare_index_params()
        index.add_index("vector", index_type="HNSW", metric_type="IP", params={"M": 16, "efConstruction": 64})
        client.create_collection("entries", schema=schema, index_params=index)
        t, n = time.perf_counter(), 0
        for ti, (tenant, vectors) in enumerate(data.items()):
            for start in range(0, len(vectors), _BATCH):
                part = vectors[start : start + _BATCH]
                rows = [{"id": ti * 10_000_000 + start + i, "tenant": tenant, "vector": v.tolist()}
                        for i, v in enumerate(part)]  # fmt: skip
                client.insert("entries", rows)
                n += len(rows)
        client.load_collection("entries")
        inserts_per_s = n / (time.perf_counter() - t)
        times, found, total = _search(client, data, queries)
        second = _second_process_opens(path)
        client.close()
    return {"inserts_per_s_batched": inserts_per_s, "search_p50_ms": _pct(times, 50), "search_p99_ms": _pct(times, 99),
            "recall_at_1": found / max(total, 1), "second_process_can_open": second}  # fmt: skip


def _search(
    client: Any, data: dict[str, Vectors], queries: dict[str, tuple[Any, Vectors]]
) -> tuple[list[float], int, int]:
    times: list[float] = []
    found = total = 0
    for ti, tenant in enumerate(data):
        src, qs = queries[tenant]
        # The first searches after load build per-segment state: warm up first.
        for q in qs[:5]:
            client.search("entries", data=[q.tolist()], limit=4, filter=f'tenant == "{tenant}"')
        for i, q in zip(src.tolist(), qs, strict=True):
            t = time.perf_counter()
            res = client.search("entries", data=[q.tolist()], limit=4, filter=f'tenant == "{tenant}"',
                                search_params={"params": {"ef": 64}})  # fmt: skip
            times.append(time.perf_counter() - t)
            found += bool(res[0]) and res[0][0]["id"] == ti * 10_000_000 + i
            total += 1
    return times, found, total


def _second_process_opens(path: str) -> bool:
    code = f"from pymilvus import MilvusClient; MilvusClient({path!r})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120).returncode == 0


def _pct(samples: list[float], p: float) -> float:
    return float(np.percentile(np.array(samples) * 1000.0, p)) if samples else 0.0


def run_alone(entries: int = 100_000, tenants: int = 2, queries: int = 500) -> dict[str, Any]:
    """The same data and queries as ``bench.cache_backend.run`` (same seed), Milvus Lite only."""
    from bench.cache_backend import _queries, _units

    rng = np.random.default_rng(7)
    names = [f"tenant-{i}" for i in range(tenants)]
    data = {t: _units(rng, entries) for t in names}
    qs = {t: _queries(rng, data[t], queries) for t in names}
    return {"entries_per_tenant": entries, "tenants": tenants, "milvus_lite": run(data, qs)}
