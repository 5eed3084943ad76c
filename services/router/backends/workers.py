"""What the router knows of each slm_worker: where it is, whether it is up, how loaded it is.

Discovery: each configured address is either ``host:port`` (a static list)
or ``dns:host:port``, re-resolved on every refresh to one worker per A/AAAA
record (compose ``--scale``, a Kubernetes headless Service), so workers that
join are used and workers that leave are dropped at the next refresh.

Leave detection (``probed``): every refresh asks each worker for
``ListModels``. A worker that cannot be reached (UNAVAILABLE: connection
refused or reset, a process that died) is down at once; one that answers
too slowly or oddly (any other error, typically DEADLINE_EXCEEDED on a
saturated host) is down after ``misses`` consecutive failures, so a single
slow probe does not take a busy worker out of rotation. A call that gets
UNAVAILABLE marks its worker down at once too, and goes to the next worker.

Load spread (``rank``): the worker with the most spare capacity for the model
first, spare being free slots minus queue depth (what the worker reported at
the last probe) corrected by this router's own calls there since that probe:
minus each call started since, plus each call ended since. The report
already counts the calls that were running when it was made, so subtracting
all calls in flight would count those twice and take a worker whose call
just finished for a full one. Ties go to fewer calls in flight, then in
turn, so equally idle workers share sequential traffic too.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from rationer.errors import RationerError, Unavailable
from services.slm_worker.client import ModelLoad, WorkerClient, WorkerModels

log = structlog.get_logger(__name__)


@dataclass
class WorkerState:
    address: str
    client: WorkerClient
    up: bool = False
    models: dict[str, ModelLoad] = field(default_factory=dict)
    inflight: int = 0
    inflight_at_probe: int = 0  # this router's calls there when the last report came in
    misses: int = 0  # consecutive failed probes that did not mark it down yet

    def serves(self, model: str) -> ModelLoad | None:
        info = self.models.get(model)
        if info is None:
            info = next((m for m in self.models.values() if m.tier == model), None)
        return info

    def spare(self, model: str) -> float:
        info = self.serves(model)
        if info is None:
            return float("-inf")
        return info.free_slots - info.queue_depth - (self.inflight - self.inflight_at_probe)

    def probed(self, listed: WorkerModels | RationerError, misses_to_mark_down: int) -> None:
        """Record one probe's outcome (the hysteresis in the module docstring)."""
        if not isinstance(listed, RationerError):
            self.models = {m.name: m for m in listed.models}
            self.up, self.misses, self.inflight_at_probe = True, 0, self.inflight
            return
        self.misses += 1
        down = isinstance(listed, Unavailable) or self.misses >= misses_to_mark_down
        if down and self.up:
            log.warning("worker down", worker=self.address, error=listed.message, misses=self.misses)
        if down:
            self.up = False


def rank(workers: Sequence[WorkerState], model: str, turn: int) -> list[WorkerState]:
    """Live workers serving ``model``, best first; ``turn`` rotates among equals."""
    live = [w for w in workers if w.up and w.serves(model) is not None]
    if not live:
        raise Unavailable(f"no local worker serves {model!r} right now")
    start = turn % len(live)
    rotated = live[start:] + live[:start]  # sorted() is stable: the rotation orders the ties
    return sorted(rotated, key=lambda w: (-w.spare(model), w.inflight))


async def expand(address: str) -> list[str]:
    """``dns:host:port`` -> one ``ip:port`` per A/AAAA record; anything else is itself."""
    if not address.startswith("dns:"):
        return [address]
    host, _, port = address[4:].rpartition(":")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as exc:
        log.warning("worker discovery failed", address=address, error=str(exc))
        return []
    ips = sorted({str(info[4][0]) for info in infos})
    return [f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip in ips]
