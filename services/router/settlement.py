"""Settlement with the ledger: retried, idempotent, never silently dropped.

Commit, Release and RecordCacheHit are idempotent on their ids, so retrying
after an ambiguous failure can never double-charge. A short synchronous
retry covers blips; if the ledger stays away longer, a commit continues in
the background until the hold would expire (the ledger refuses a commit
after that), so a ledger restart during a call still bills it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from rationer.errors import Cancelled, DeadlineExceeded, FailedPrecondition, RationerError, Unavailable

log = structlog.get_logger(__name__)

TRANSIENT: tuple[type[RationerError], ...] = (Unavailable, DeadlineExceeded, Cancelled)
Op = Callable[[], Coroutine[Any, Any, Any]]


async def retry_settlement(op: Op, *, what: str, attempts: int = 6) -> Any:
    """Retry transient ledger failures with exponential backoff (~1.5 s in all)."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return await op()
        except TRANSIENT as exc:
            if attempt == attempts - 1:
                log.warning("settlement still failing; continuing in the background", what=what, error=exc.message)
                raise
            await asyncio.sleep(delay)
            delay *= 2
    return None


async def settle_later(op: Op, *, what: str, window_s: float, max_delay_s: float = 5.0) -> bool:
    """Keep retrying ``op`` until it succeeds or ``window_s`` has passed."""
    give_up_at = time.monotonic() + window_s
    delay = 0.5
    while True:
        try:
            await op()
            log.info("deferred settlement landed", what=what)
            return True
        except FailedPrecondition as exc:
            log.error("deferred settlement refused; the call is unbilled", what=what, error=exc.message)
            return False
        except TRANSIENT as exc:
            if time.monotonic() + delay > give_up_at:
                log.error("deferred settlement gave up; the hold expires unbilled", what=what, error=exc.message)
                return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay_s)


async def best_effort(coro: Coroutine[Any, Any, Any], what: str) -> None:
    try:
        await coro
    except RationerError as exc:
        log.warning("best-effort step failed", what=what, error=exc.message)
