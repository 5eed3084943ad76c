"""Settlement with the ledger: retried, idempotent, never silently dropped.

Commit, Release and RecordCacheHit are idempotent on their ids (a cache-hit
record on the answer's own record id), so retrying after an ambiguous failure
can never double-charge. A short synchronous
retry covers blips. If the ledger stays away longer, a journaled commit (see
journal.py) keeps being retried until the ledger takes it, however late: the
router's commits set bill_late, so the ledger bills one that arrives after
its hold expired. A release only
frees a hold, which expires on its own, so it is retried for a window only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from rationer.errors import Cancelled, DeadlineExceeded, FailedPrecondition, RationerError, Unavailable
from services.ledger.calls import CommitCall, SettlementCall
from services.router.journal import PendingSettlement, SettlementJournal
from services.router.ports import LedgerPort
from services.router.types import Charge

log = structlog.get_logger(__name__)

TRANSIENT: tuple[type[RationerError], ...] = (Unavailable, DeadlineExceeded, Cancelled)
Op = Callable[[], Coroutine[Any, Any, Any]]


@dataclasses.dataclass
class ReplayCount:
    """What one pass over a journal did (``Settler.replay_pending``)."""

    landed: int = 0
    refused: int = 0  # the ledger's definitive refusal: the entry is dropped, with an error log
    stopped: bool = False  # a transient failure ended the pass; the rest waits in the journal


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


async def best_effort(coro: Coroutine[Any, Any, Any], what: str) -> None:
    try:
        await coro
    except RationerError as exc:
        log.warning("best-effort step failed", what=what, error=exc.message)


class Settler:
    """Journal-first settlement: commits and cache-hit records reach the ledger.

    The request path journals an entry and sends it inline. Whatever the
    ledger did not confirm (an outage, a cancel, an earlier run that stopped)
    is replayed by one drainer task, in journal order, backing off while the
    ledger is away: one caller of the ledger however long the backlog, rather
    than one retrying task per entry that would all stampede it on return.
    """

    def __init__(
        self,
        ledger: LedgerPort,
        journal: SettlementJournal,
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
        *,
        max_backoff_s: float = 30.0,
        inline_budget_s: float = 2.0,
        connected: Callable[[], bool] | None = None,
    ) -> None:
        self._ledger = ledger
        # How long a response may wait for its own settlement: a hung ledger
        # (not a refusing one) would otherwise hold it for every retry's
        # full call timeout.
        self._inline_budget_s = inline_budget_s
        self.journal = journal
        self._spawn = spawn
        self._max_backoff_s = max_backoff_s
        self._inline: set[int] = set()  # entries the request path is sending now
        self._drainer: asyncio.Task[Any] | None = None
        # Whether the ledger's connection is up now; None: always assume so.
        self._connected = connected

    def can_detach(self) -> bool:
        """Whether a settlement may go in the background now (``settle_detached``).

        Only while the ledger is reachable and nothing waits for it: during
        an outage the caller waits the short inline retry, as before, and
        learns that its settlement is pending.
        """
        if self._drainer is not None and not self._drainer.done():
            return False
        return self._connected is None or self._connected()

    async def settle(self, call: SettlementCall) -> Charge:
        """Journal a settlement, then give it to the ledger.

        A short retry covers blips. If the ledger stays away, or the caller
        goes away mid-settle, the entry is left to the drainer (and, after a
        restart, to the next run); the TRANSIENT error or the cancel is
        re-raised for the caller to decide.
        """
        entry_id = self.journal.add(call)
        self._inline.add(entry_id)
        try:
            try:
                async with asyncio.timeout(self._inline_budget_s):
                    out: Charge = await retry_settlement(lambda: self._send(call), what=call.KIND)
            except TimeoutError:
                raise Unavailable(
                    f"the ledger did not confirm the {call.KIND} within {self._inline_budget_s:g}s; "
                    "it is journaled and settles in the background"
                ) from None
        except asyncio.CancelledError:
            self._hand_over(entry_id)
            raise
        except TRANSIENT:
            self._hand_over(entry_id)
            raise
        except RationerError:
            self._inline.discard(entry_id)
            self.journal.done(entry_id)  # the ledger's definitive answer
            raise
        self._inline.discard(entry_id)
        self.journal.done(entry_id)
        return out

    def settle_detached(self, call: SettlementCall) -> None:
        """Journal a settlement and send it in the background: the caller answers now.

        The journal row, written before this returns, is what makes the
        settlement durable: if this process dies before the ledger confirms,
        the next run replays it (``resume``), and the ledger takes it once.
        """
        entry_id = self.journal.add(call)
        self._inline.add(entry_id)
        self._spawn(self._send_detached(entry_id, call))

    async def _send_detached(self, entry_id: int, call: SettlementCall) -> None:
        try:
            await retry_settlement(lambda: self._send(call), what=call.KIND)
        except asyncio.CancelledError:
            self._inline.discard(entry_id)  # stopping: the journal row replays on the next start
            raise
        except TRANSIENT:
            self._hand_over(entry_id)  # the drainer takes it, however late
            return
        except RationerError as exc:
            log.error("the ledger refused a settlement; it stays unbilled", what=f"{call.KIND} {_id_of(call)}",
                      error=exc.message)  # fmt: skip
        self._inline.discard(entry_id)
        self.journal.done(entry_id)

    def resume(self) -> int:
        """Replay what an earlier run journaled but never saw confirmed."""
        n = len(self.journal)
        if n:
            log.warning("replaying journaled settlements", count=n, durable=self.journal.durable)
            self._wake()
        return n

    def _hand_over(self, entry_id: int) -> None:
        self._inline.discard(entry_id)
        self._wake()

    def _wake(self) -> None:
        if self._drainer is None or self._drainer.done():
            self._drainer = self._spawn(self._drain())

    def _send(self, call: SettlementCall, *, replay: bool = False) -> Coroutine[Any, Any, Charge]:
        if isinstance(call, CommitCall):
            return self._ledger.commit(call)
        # A replayed cache-hit record was served already (the inline attempt
        # failed transiently): the ledger must take it past any limit.
        if replay:
            return self._ledger.record_cache_hit(dataclasses.replace(call, served=True))
        return self._ledger.record_cache_hit(call)

    async def _drain(self) -> None:
        delay = min(0.5, self._max_backoff_s)
        failures = 0
        while pending := [e for e in self.journal.pending() if e.entry_id not in self._inline]:
            if await self._replay(pending):
                delay, failures = min(0.5, self._max_backoff_s), 0
                continue
            failures += 1
            if failures in (1, 10) or failures % 100 == 0:
                log.warning("journaled settlements waiting for the ledger", pending=len(pending), failures=failures)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff_s)

    async def replay_pending(self) -> ReplayCount:
        """One pass over the whole journal in order, stopping at the first transient failure."""
        count = ReplayCount()
        count.stopped = not await self._replay(self.journal.pending(), count)
        return count

    async def _replay(self, pending: list[PendingSettlement], count: ReplayCount | None = None) -> bool:
        """Send entries in order; False at the first transient failure."""
        count = count if count is not None else ReplayCount()
        for entry in pending:
            what = f"{entry.call.KIND} {_id_of(entry.call)}"
            try:
                await self._send(entry.call, replay=True)
            except TRANSIENT:
                return False
            except RationerError as exc:
                log.error("the ledger refused a journaled settlement; it stays unbilled", what=what,
                          error=exc.message)  # fmt: skip
                count.refused += 1
            else:
                log.info("deferred settlement landed", what=what)
                count.landed += 1
            self.journal.done(entry.entry_id)
        return True


def _id_of(call: SettlementCall) -> str:
    return call.reservation_id if isinstance(call, CommitCall) else call.request_id
