"""The cache service's dependencies from its settings: embedder, micro-batcher, verifier, ``SemanticCache``."""

from __future__ import annotations

from pathlib import Path

from rationer.embedding import Embedder
from rationer.embedding.batcher import MicroBatcher
from services.cache.backend import VectorBackend
from services.cache.cache import CachePolicy, SemanticCache
from services.cache.faiss_backend import EmbeddedFaissBackend
from services.cache.index import IndexConfig
from services.cache.pgvector_backend import PgvectorBackend, PgvectorConfig
from services.cache.server import CacheDeps
from services.cache.settings import CacheSettings
from services.cache.verifier import Verifier


def build_deps(settings: CacheSettings, embedder: Embedder | None = None) -> CacheDeps:
    """The cache from settings, not started (the embedder may be shared by tests)."""
    embedder = embedder or Embedder(
        Path(settings.model_dir) if settings.model_dir else None,
        quantized=settings.quantized,
        threads=settings.embed_threads,
    )
    batcher = MicroBatcher(embedder.embed, window_s=settings.batch_window_ms / 1000.0, max_batch=settings.max_batch)
    policy = CachePolicy(
        min_similarity=settings.min_similarity,
        reworded_similarity=settings.reworded_similarity,
        guard=settings.guard,
        candidates=settings.candidates,
        default_ttl_s=settings.default_ttl_s,
        max_ttl_s=settings.max_ttl_s,
        capacity_per_tenant=settings.capacity_per_tenant,
        max_text_bytes=settings.max_text_bytes,
        max_answer_bytes=settings.max_answer_bytes,
    )
    index = IndexConfig(
        kind=settings.index,
        hnsw_m=settings.hnsw_m,
        ef_search=settings.hnsw_ef_search,
        hnsw_min_entries=settings.hnsw_min_entries,
    )
    data_dir = Path(settings.data_dir) if settings.data_dir else None
    verifier = build_verifier(settings)
    cache = SemanticCache(batcher, data_dir=data_dir, policy=policy, verifier=verifier,
                          backend=build_backend(settings, data_dir, index))  # fmt: skip
    return CacheDeps(cache=cache)


def build_backend(settings: CacheSettings, data_dir: Path | None, index: IndexConfig) -> VectorBackend:
    if settings.backend == "pgvector":
        return PgvectorBackend(
            PgvectorConfig(
                dsn=settings.pg_dsn,
                schema=settings.pg_schema,
                pool_size=settings.pg_pool_size,
                ef_search=settings.pg_ef_search,
            )
        )
    return EmbeddedFaissBackend(data_dir, index)


def build_verifier(settings: CacheSettings) -> Verifier | None:
    if not settings.verifier:
        return None
    return Verifier(
        Path(settings.verifier_artifact) if settings.verifier_artifact else None,
        max_false_hit_rate=settings.max_false_hit_rate,
        threshold=settings.verifier_threshold,
    )
