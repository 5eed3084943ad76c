"""Settlement with the ledger: retried, idempotent, never silently dropped.

Commit, Release and RecordCacheHit are idempotent on their ids, so retrying
after an ambiguous failure can never double-charge. A short synchronous
retry covers blips. If the ledger stays away longer, a journaled commit (see
journal.py) keeps being retried until the ledger takes it, however late: the
router's commits set bill_late, so the ledger bills one that arrives after
its hold expired. A release only
frees a hold, which expires on its own, so it is retried for a window only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from rationer.errors import Cancelled, DeadlineExceeded, FailedPrecondition, RationerError, Unavailable
from services.router.journal import PendingSettlement, SettlementJournal
from services.router.ports import Charge, LedgerPort

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
            log.error("deferred settlement refused", what=what, error=exc.message)
            return False
        except TRANSIENT as exc:
            if time.monotonic() + delay > give_up_at:
                log.warning("deferred settlement gave up; the hold expires on its own", what=what,
                            error=exc.message)  # fmt: skip
                return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay_s)


async def settle_until_landed(op: Op, *, what: str, max_delay_s: float = 30.0) -> bool:
    """Retry ``op`` through any outage; False if the ledger refused it for good."""
    delay = min(0.5, max_delay_s)
    failures = 0
    while True:
        try:
            await op()
        except TRANSIENT as exc:
            failures += 1
            if failures in (1, 10) or failures % 100 == 0:
                log.warning("journaled settlement waiting for the ledger", what=what, error=exc.message,
                            failures=failures)  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
            continue
        except RationerError as exc:
            log.error("the ledger refused a journaled settlement; it stays unbilled", what=what, error=exc.message)
            return False
        log.info("deferred settlement landed", what=what, failures=failures)
        return True


async def best_effort(coro: Coroutine[Any, Any, Any], what: str) -> None:
    try:
        await coro
    except RationerError as exc:
        log.warning("best-effort step failed", what=what, error=exc.message)


class Settler:
    """Journal-first settlement: commits and cache-hit records reach the ledger."""

    def __init__(
        self,
        ledger: LedgerPort,
        journal: SettlementJournal,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        *,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._ledger = ledger
        self.journal = journal
        self._spawn = spawn
        self._max_backoff_s = max_backoff_s

    async def settle(self, kind: str, args: dict[str, Any]) -> Any:
        """Journal a settlement, then give it to the ledger.

        A short retry covers blips. If the ledger stays away, or the caller
        goes away mid-settle, the journaled entry continues in the background
        (and after a restart) until the ledger confirms it; the TRANSIENT
        error or the cancel is re-raised for the caller to decide.
        """
        entry = PendingSettlement(self.journal.add(kind, args), kind, args, time.time())
        try:
            out = await retry_settlement(lambda: self._send(kind, args), what=kind)
        except asyncio.CancelledError:
            self._spawn(self._until_landed(entry))
            raise
        except TRANSIENT:
            self._spawn(self._until_landed(entry))
            raise
        except RationerError:
            self.journal.done(entry.entry_id)  # the ledger's definitive answer
            raise
        self.journal.done(entry.entry_id)
        return out

    def resume(self) -> int:
        """Replay what an earlier run journaled but never saw confirmed."""
        pending = self.journal.pending()
        for entry in pending:
            self._spawn(self._until_landed(entry))
        if pending:
            log.warning("replaying journaled settlements", count=len(pending), durable=self.journal.durable)
        return len(pending)

    def _send(self, kind: str, args: dict[str, Any]) -> Coroutine[Any, Any, Charge]:
        if kind == "commit":
            return self._ledger.commit(**args)
        return self._ledger.record_cache_hit(**args)

    async def _until_landed(self, entry: PendingSettlement) -> None:
        what = f"{entry.kind} {entry.args.get('reservation_id') or entry.args.get('request_id')}"
        await settle_until_landed(lambda: self._send(entry.kind, entry.args), what=what,
                                  max_delay_s=self._max_backoff_s)  # fmt: skip
        self.journal.done(entry.entry_id)
