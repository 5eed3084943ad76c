"""Budget escrow: a ledger replica authorizes against its own slices of the budgets, in memory.

Plain Python, no gRPC. The fast path takes a hold from this replica's slices
in memory and writes the reservation and its hold rows in one transaction that
touches no budget row (it only checks the slices' generations under this
replica's shared advisory lock). When a slice cannot cover a request, the slow
path (services.ledger.sql.escrow_refill.refill, one transaction under the
budget row locks) refills it, reclaiming other replicas' unused slices if the
budget is short, and places or denies the request. A settle loop folds the
charges into ``spent``, renews the slices and returns the unused part of idle
ones; ``close`` returns everything unused. Invariant E1: docs/ledger.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from dataclasses import dataclass, field
from functools import partial

import structlog

from rationer.errors import DeadlineExceeded, RationerError, Unavailable
from rationer.platform.clock import Clock
from services.ledger.models import AuthorizeInput, Denial, KeyRecord, Price, Reservation
from services.ledger.settings import LedgerSettings
from services.ledger.sql import escrow as sql_escrow
from services.ledger.sql import escrow_refill as sql_refill
from services.ledger.sql.common import BudgetState, path_scope_keys
from services.ledger.sql.data import new_id
from services.ledger.store import Store

log = structlog.get_logger(__name__)


@dataclass
class _Slice:
    granted: int
    generation: int
    expires_at: int
    entries: dict[str, int] = field(default_factory=dict)  # reservation id -> what it holds here
    room: int = 0  # the budget's room outside other replicas' slices at the last refill
    limit: int = 0
    used: int = 0
    active: bool = True  # took a hold since the last settle

    def __post_init__(self) -> None:
        self.used = sum(self.entries.values())


class EscrowBook:
    """This replica's slices as it knows them. It never counts less than the rows hold."""

    def __init__(self) -> None:
        self.slices: dict[str, _Slice] = {}
        self.refilling: set[str] = set()

    def try_take(self, res_id: str, amounts: dict[str, int], expires: int) -> dict[str, int] | None:
        """Take the hold from every slice (all or none); the generations it was sized against."""
        for bid, amt in amounts.items():
            s = self.slices.get(bid)
            if s is None or bid in self.refilling or s.expires_at < expires or s.granted - s.used < amt:
                return None
            if res_id in s.entries:
                return None  # ids are fresh per attempt; never count one twice
        gens = {}
        for bid, amt in amounts.items():
            s = self.slices[bid]
            s.entries[res_id] = amt
            s.used += amt
            s.active = True
            gens[bid] = s.generation
        return gens

    def drop(self, res_id: str, budget_ids: list[str]) -> None:
        """Forget a hold whose rows surely do not exist (its transaction rolled back)."""
        for bid in budget_ids:
            s = self.slices.get(bid)
            if s is not None:
                s.used -= s.entries.pop(res_id, 0)

    def apply(self, grants: dict[str, sql_refill.Grant]) -> None:
        for bid, g in grants.items():
            if g.amount == 0 and not g.live:
                self.slices.pop(bid, None)
            else:
                self.slices[bid] = _Slice(g.amount, g.generation, g.expires_at, dict(g.live), g.room, g.limit)

    def apply_settled(self, bid: str, charged: int, settled: list[str], expires: int) -> None:
        s = self.slices.get(bid)
        if s is None:
            return
        s.granted -= charged  # the charges moved from the slice into spent
        for rid in settled:
            s.used -= s.entries.pop(rid, 0)
        s.expires_at = max(s.expires_at, expires)

    def fraction(self, amounts: dict[str, int]) -> float:
        """The budgets' remaining fraction as Authorize reports it: what neither this replica
        holds nor another replica's slice covers (as of the last refill)."""
        out = 1.0
        for bid in amounts:
            s = self.slices[bid]
            out = min(out, max(0.0, (s.room - s.used) / s.limit)) if s.limit > 0 else 0.0
        return out

    def forget(self, res_id: str) -> None:
        """A release committed here deleted the reservation's hold rows: stop counting them."""
        for s in self.slices.values():
            s.used -= s.entries.pop(res_id, 0)


def _placed(r: Reservation | Denial | None) -> Reservation | Denial:
    assert r is not None, "a refill with a request always places or denies it"
    return r


def replica_id(settings: LedgerSettings) -> str:
    """Unique per process start: a restarted replica starts with no slices and reaps nothing of its own."""
    return f"{settings.replica_name or socket.gethostname()}-{uuid.uuid4().hex[:12]}"


class Escrow:
    def __init__(self, store: Store, settings: LedgerSettings, clock: Clock, replica: str) -> None:
        self._store = store
        self._s = settings
        self._clock = clock
        self.replica = replica
        self.book = EscrowBook()
        self._lock = asyncio.Lock()
        self._ttl_us = int((settings.reservation_ttl_s + settings.escrow_slice_grace_s) * 1e6)
        self._sizing = sql_refill.Sizing(settings.escrow_slice_fraction, settings.escrow_slice_max_requests,
                                         self._ttl_us)  # fmt: skip
        self._task: asyncio.Task[None] | None = None
        self._prices: dict[str, tuple[Price, float]] = {}
        self._budgets: dict[tuple[str, ...], tuple[list[BudgetState], float]] = {}

    def invalidate(self) -> None:
        """Forget cached prices and budget lists (after a change made through this replica)."""
        self._prices.clear()
        self._budgets.clear()

    async def _prepare(self, a: AuthorizeInput, key: KeyRecord) -> sql_escrow.Prepared:
        """Price and path budgets from a short cache, so the fast path reads nothing.

        Staleness is bounded by ``auth_cache_ttl_s`` like the key cache: a new
        price applies, and a budget created on the path is held against, that
        much later (refills always read the locked budget rows themselves).
        """
        sql_escrow.check_tier(key, a.tier)
        scope_keys = path_scope_keys(key.org_id, key.team_id, key.user_id, key.key_id, a.project)
        now, ttl = time.monotonic(), self._s.auth_cache_ttl_s
        price = self._prices.get(a.tier)
        budgets = self._budgets.get(tuple(scope_keys))
        need_price = price is None or now - price[1] >= ttl
        need_budgets = budgets is None or now - budgets[1] >= ttl
        if need_price or need_budgets:
            got_p, got_b = await self._store.read(partial(sql_escrow.lookups, a.tier if need_price else None,
                                                          scope_keys if need_budgets else None))  # fmt: skip
            if got_p is not None:
                price = self._prices[a.tier] = (got_p, now)
            if got_b is not None:
                budgets = self._budgets[tuple(scope_keys)] = (got_b, now)
        assert price is not None and budgets is not None
        return sql_escrow.prepared(a, key, price[0], budgets[0], scope_keys)

    async def authorize(self, a: AuthorizeInput, ttl_us: int, key: KeyRecord) -> Reservation | Denial:
        now = self._clock.now_us()
        p = await self._prepare(a, key)
        expires = now + ttl_us
        amounts = p.amounts()
        for _ in range(4):
            res_id = new_id("r")
            gens = self.book.try_take(res_id, amounts, expires)
            if gens is None:
                async with self._lock:  # one refill at a time; it may have made room meanwhile
                    gens = self.book.try_take(res_id, amounts, expires)
                    if gens is None:
                        return _placed(await self._refill(p, res_id, expires))
            placed = await self._place(p, res_id, gens, expires, now, amounts)
            if placed is not None:
                return placed
        async with self._lock:
            return _placed(await self._refill(p, new_id("r"), expires))

    async def _place(self, p: sql_escrow.Prepared, res_id: str, gens: dict[str, int], expires: int, now: int,
                     amounts: dict[str, int]) -> Reservation | None:  # fmt: skip
        frac = self.book.fraction(amounts)
        try:
            r: Reservation = await self._store.write(
                partial(sql_escrow.place, p, res_id, self.replica, gens, expires, now, frac))
        except sql_escrow.StaleSlice:
            self.book.drop(res_id, list(amounts))
            return None
        except (Unavailable, DeadlineExceeded):
            raise  # the rows may exist: keep counting them until the next refill reads the truth
        except RationerError:
            self.book.drop(res_id, list(amounts))  # refused inside the transaction: rolled back
            raise
        if r.replayed:
            self.book.drop(res_id, list(amounts))  # an earlier attempt's reservation answered
        return r

    async def _refill(self, p: sql_escrow.Prepared | None, res_id: str, expires: int,
                      budget_ids: list[str] | None = None) -> Reservation | Denial | None:  # fmt: skip
        ids = budget_ids if budget_ids is not None else [b.id for b in p.budgets] if p is not None else []
        self.book.refilling.update(ids)
        now = self._clock.now_us()
        try:
            out = await self._store.write(partial(sql_refill.refill, self.replica, p, res_id, expires, now,
                                                  self._sizing, self._store.dialect, ids))  # fmt: skip
        finally:
            self.book.refilling.difference_update(ids)
        self.book.apply(out.grants)
        return out.result

    async def settle(self, *, return_unused: bool = False) -> None:
        """Fold charges into spent and renew slices; return the unused part of idle ones (or all)."""
        async with self._lock:
            ids = sorted(self.book.slices)
            idle = ids if return_unused else [b for b in ids if not self.book.slices[b].active]
            now = self._clock.now_us()
            folded = await self._store.write(partial(sql_refill.settle, self.replica, ids, now, self._ttl_us,
                                                     self._store.dialect))  # fmt: skip
            for bid in set(ids) - set(folded):
                self.book.slices.pop(bid, None)  # the budget was removed
            for bid, (charged, settled, exp) in folded.items():
                self.book.apply_settled(bid, charged, settled, exp)
            for s in self.book.slices.values():
                s.active = False
            if idle:
                await self._refill(None, "", now, idle)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._settle_forever())

    async def _settle_forever(self) -> None:
        while True:
            await asyncio.sleep(self._s.escrow_settle_interval_s)
            try:
                await self.settle()
            except Exception as exc:  # settling is catch-up work; the next round retries
                log.warning("escrow settle failed", error=str(exc))

    async def close(self) -> None:
        """Stop settling and give back every unused slice (what is held stays until settled or expired)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.settle(return_unused=True)
        except RationerError as exc:
            log.warning("escrow slices not returned; they come back when they expire", error=exc.message)
