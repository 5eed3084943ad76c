"""Start a real cache server in-process, for tests (this service's and the router's).

    async with running_cache(data_dir=tmp_path) as running:
        async with running.client() as client:
            ...

The ONNX embedder is loaded once per process and shared, because loading it
costs about a second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import grpc

from rationer.embedding import Embedder
from rationer.platform.server import set_serving
from services.cache.cache import SemanticCache
from services.cache.client import CacheClient
from services.cache.server import create_server
from services.cache.settings import CacheSettings
from services.cache.wiring import build_deps
from testsupport.platform import SERVICE_TOKEN


@lru_cache(maxsize=2)
def shared_embedder(quantized: bool = False) -> Embedder:
    return Embedder(quantized=quantized)


@dataclass
class RunningCache:
    server: grpc.aio.Server
    port: int
    cache: SemanticCache
    settings: CacheSettings
    service_token: str = SERVICE_TOKEN  # every RPC demands it

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **kw: Any) -> CacheClient:
        """A client that presents the service token."""
        return CacheClient(self.address, service_token=self.service_token, **kw)


@asynccontextmanager
async def running_cache(
    data_dir: Path | None = None, *, save_snapshot: bool = True, **overrides: Any
) -> AsyncIterator[RunningCache]:
    """A started cache server on 127.0.0.1:<free port>; stopped (and its
    snapshot saved, unless ``save_snapshot`` is False, which models a crash)
    on exit."""
    settings = CacheSettings(data_dir=str(data_dir) if data_dir else "", **overrides)
    deps = build_deps(settings, shared_embedder(settings.quantized))
    cache = deps.cache
    server, port = create_server("127.0.0.1:0", deps, service_token=SERVICE_TOKEN)
    await server.start()
    try:
        await cache.start()
        await set_serving(server, True)
        yield RunningCache(server=server, port=port, cache=cache, settings=settings)
    finally:
        await server.stop(0)
        cache.close(save=save_snapshot)
