"""Typed settings of the cache service (TOML section ``[cache]``).

Environment overrides follow the platform rule, e.g.
``RATIONER_CACHE__DATA_DIR=/var/lib/rationer/cache`` or
``RATIONER_CACHE__MIN_SIMILARITY=0.55``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rationer.platform.settings import ServiceSettings


class CacheSettings(ServiceSettings):
    # Where entries and vectors live (docs/cache.md, "Backends"):
    # "faiss": embedded SQLite + in-process FAISS (the default; one process);
    # "pgvector": one PostgreSQL database with pgvector shared by every cache
    # replica (RATIONER_CACHE__BACKEND=pgvector RATIONER_CACHE__PG_DSN=...).
    backend: Literal["faiss", "pgvector"] = "faiss"
    pg_dsn: str = ""  # libpq URI or key=value string; the pgvector extension must exist or be creatable
    pg_schema: str = Field(default="rationer_cache", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    pg_pool_size: int = Field(default=8, ge=1, le=256)
    # HNSW candidates per search. 128, not 64: the one index holds every
    # tenant, and the tenant filter drops the others' candidates (recall@1 at
    # 2 x 100k: 0.63 at 64; docs/BENCHMARKS.md, "Shared cache backend").
    pg_ef_search: int = Field(default=128, ge=1, le=1000)
    # SQLite database (entries + vectors, WAL) and the FAISS snapshot live here
    # (with backend = "pgvector" only the wrong-hit receipts do).
    # Empty: an in-memory cache that does not survive a restart.
    data_dir: str = ""
    # Embedder: None = ~/.cache/rationer/models. fp32 is the default: int8 is
    # ~4x faster with the same fow-cache figures, but its vectors differ (cos
    # 0.92-0.97 vs fp32), so the router, classifier and cache must switch
    # together, and the classifier does worse on them (see docs/cache.md).
    model_dir: str | None = None
    quantized: bool = False
    embed_threads: int = Field(default=1, ge=1)
    # Micro-batching of embeddings: concurrent requests within this window are
    # embedded in one ONNX call.
    batch_window_ms: float = Field(default=1.5, ge=0.0)
    max_batch: int = Field(default=32, ge=1)
    # Thresholds chosen from the fow-cache sweep (docs/cache.md): a candidate
    # the guard verified word by word needs min_similarity; a rewording (the
    # guard could not match every content word) needs reworded_similarity.
    min_similarity: float = Field(default=0.5, gt=0.0, le=1.0)
    reworded_similarity: float = Field(default=0.6, gt=0.0, le=1.0)
    guard: bool = True
    # The verifier (docs/cache.md, "The verifier"): a calibrated model decides
    # each candidate above min_similarity. max_false_hit_rate picks its
    # operating point from the calibration curve shipped with the artifact;
    # verifier_threshold, written by `rationer calibrate cache`, overrides it.
    # verifier = false falls back to the lexical guard and the two
    # thresholds above.
    verifier: bool = True
    max_false_hit_rate: float = Field(default=0.01, gt=0.0, lt=1.0)
    verifier_threshold: float | None = Field(default=None, gt=0.0, le=1.0)
    verifier_artifact: str | None = None
    candidates: int = Field(default=4, ge=1, le=64)
    default_ttl_s: float = Field(default=24 * 3600.0, gt=0)
    max_ttl_s: float = Field(default=30 * 24 * 3600.0, gt=0)
    capacity_per_tenant: int = Field(default=100_000, ge=1)
    # "hnsw" keeps p50 search well under 1 ms at 100k entries; "flat" is exact
    # but ~linear in size (docs/bench/cache.md). "auto" uses flat below
    # hnsw_min_entries in a namespace and HNSW above.
    index: Literal["flat", "hnsw", "auto"] = "auto"
    hnsw_m: int = Field(default=32, ge=4)
    hnsw_ef_search: int = Field(default=64, ge=8)
    hnsw_min_entries: int = Field(default=20_000, ge=0)
    max_text_bytes: int = Field(default=64 * 1024, ge=1)
    max_answer_bytes: int = Field(default=256 * 1024, ge=1)

    @model_validator(mode="after")
    def _backend_has_what_it_needs(self) -> CacheSettings:
        if self.backend == "pgvector" and not self.pg_dsn.strip():
            raise ValueError(
                "cache backend 'pgvector' needs pg_dsn (RATIONER_CACHE__PG_DSN), e.g. postgresql://user@host:5432/db"
            )
        return self
