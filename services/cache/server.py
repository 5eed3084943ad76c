"""Server factory and dependency wiring for the cache service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from rationer.api.cache.v1 import cache_pb2, cache_pb2_grpc
from rationer.embedding import Embedder
from rationer.embedding.batcher import MicroBatcher
from rationer.platform.interceptor import ServiceCredential
from rationer.platform.server import build_server
from services.cache.cache import CachePolicy, SemanticCache
from services.cache.index import IndexConfig
from services.cache.servicer import CacheServicer
from services.cache.settings import CacheSettings
from services.cache.verifier import Verifier

SERVICE_NAME = cache_pb2.DESCRIPTOR.services_by_name["CacheService"].full_name


@dataclass
class CacheDeps:
    cache: SemanticCache


def build_cache(settings: CacheSettings, embedder: Embedder | None = None) -> SemanticCache:
    """The domain object from settings (the embedder may be shared by tests)."""
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
    return SemanticCache(batcher, data_dir=data_dir, policy=policy, index_config=index, verifier=verifier)


def build_verifier(settings: CacheSettings) -> Verifier | None:
    if not settings.verifier:
        return None
    return Verifier(
        Path(settings.verifier_artifact) if settings.verifier_artifact else None,
        max_false_hit_rate=settings.max_false_hit_rate,
        threshold=settings.verifier_threshold,
    )


def create_server(address: str, deps: CacheDeps, *, service_token: str) -> tuple[grpc.aio.Server, int]:
    """Create (not start) the server. Health starts NOT_SERVING: the caller
    flips it once ``deps.cache.start()`` has loaded the index. Every RPC
    demands ``service_token`` (cached answers are tenants' data)."""

    def register(server: grpc.aio.Server) -> None:
        cache_pb2_grpc.add_CacheServiceServicer_to_server(CacheServicer(deps.cache), server)

    return build_server(address, service="cache", service_names=[SERVICE_NAME], register=register,
                        credential=ServiceCredential(service_token), serving=False)  # fmt: skip
