"""The router's event loop: uvloop when installed, asyncio's own otherwise.

uvloop cuts the per-request cost of the loop itself (callbacks, sockets,
timers); see docs/BENCHMARKS.md (issue 17) for what it measured here. It is
optional (the ``fast`` extra), so a plain install runs the same code on
asyncio's loop.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

import structlog

from rationer.errors import FailedPrecondition

log = structlog.get_logger(__name__)


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What ``asyncio.run(loop_factory=...)`` takes for ``event_loop = choice``; None: asyncio's default."""
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise FailedPrecondition(
                "event_loop = 'uvloop' but uvloop is not installed; pip install 'rationer[fast]', "
                "or set event_loop = 'auto'"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
