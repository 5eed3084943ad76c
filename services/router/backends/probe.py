"""Readiness probes for the frontier tiers.

A frontier tier is configured by URL only, so without a probe it would
count as healthy until three calls had failed (the circuit breaker), and
``/ready`` would list an endpoint nothing can reach. Each frontier backend
is probed once before the router serves, then every ``every_s``; local
tiers are probed already (the worker pool's ListModels refresh).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from services.router.backends.frontier import FrontierBackend


async def probe_all(backends: Iterable[object]) -> None:
    frontiers = [b for b in backends if isinstance(b, FrontierBackend)]
    await asyncio.gather(*(b.probe() for b in frontiers))


async def keep_probing(backends: Iterable[object], every_s: float = 10.0) -> None:
    targets = list(backends)
    while True:
        await asyncio.sleep(every_s)
        await probe_all(targets)
