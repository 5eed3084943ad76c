"""Test and benchmark helpers: a real OpenAI-compatible server.

``llama_cpp.server`` serving a local GGUF stands in for a paid frontier API:
it speaks the same HTTP protocol, so the router's frontier client is
exercised end to end against a real server, not a mock.
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
    from services.slm_worker.registry import resolve_model_path
    from services.slm_worker.testing import smollm2_settings

    return resolve_model_path(smollm2_settings().models[0])


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout_s: float = 15.0) -> None:
    """SIGTERM every process (last started first), then SIGKILL whatever is left."""
    for proc in reversed(procs):
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()




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
