"""The ledger's data plane: authenticate, authorize/commit/release, cache hits, reads.

Plain Python: no gRPC. Every money decision happens inside one database
operation (see services.ledger.sql.data); this class validates input, applies rate limits,
caches key lookups and turns denials into ``ResourceExhausted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import replace
from functools import partial

import structlog

from rationer.errors import (
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    RationerError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from rationer.platform.clock import SYSTEM_CLOCK, Clock
from services.ledger import validate
from services.ledger.calls import CacheHitCall, CommitCall
from services.ledger.escrow import Escrow
from services.ledger.models import (
    AuthorizeInput,
    CommitResult,
    Denial,
    Headroom,
    KeyRecord,
    Principal,
    RateLimit,
    ReleaseResult,
    Reservation,
    UsageEvent,
)
from services.ledger.money import to_datetime
from services.ledger.ratelimit import RateCheck, RateLimiter
from services.ledger.settings import LedgerSettings
from services.ledger.sql import admin as sql_admin
from services.ledger.sql import cache_hits as sql_hits
from services.ledger.sql import data as sql_data
from services.ledger.sql import escrow as sql_escrow
from services.ledger.sql.common import bound_project, load_key_by_id, require_active
from services.ledger.store import Store

log = structlog.get_logger(__name__)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Ledger:
    def __init__(self, store: Store, limiter: RateLimiter, settings: LedgerSettings,
                 clock: Clock = SYSTEM_CLOCK, escrow: Escrow | None = None) -> None:  # fmt: skip
        self._store = store
        self.escrow = escrow
        self._limiter = limiter
        self._s = settings
        self._clock = clock
        self._by_hash: dict[str, tuple[KeyRecord, float]] = {}
        self._by_id: dict[str, tuple[KeyRecord, float]] = {}
        self._limits: dict[str, RateLimit] = {}
        self._limits_at = -1e18
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def store(self) -> Store:
        return self._store

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    def now(self) -> int:
        """Microseconds since the epoch, from the injected clock."""
        return self._clock.now_us()

    @property
    def clock(self) -> Clock:
        return self._clock

    def start_sweeper(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self.escrow is not None:
            await self.escrow.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def sweep_once(self) -> int:
        """Mark expired holds and delete their rows; returns how many."""
        n: int = await self._store.write(partial(sql_data.sweep_expired, self._clock.now_us()))
        reaped = await self._store.write(partial(sql_escrow.reap_expired, self._clock.now_us(), self._store.dialect))
        if reaped:
            log.info("expired escrow slices reaped", count=reaped)
        if n:
            log.info("expired holds swept", count=n)
        return n

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._s.sweep_interval_s)
            try:
                await self.sweep_once()
            except Exception as exc:  # the sweeper is hygiene; never let it die
                log.warning("sweep failed", error=str(exc))

    def invalidate(self) -> None:
        """Forget cached keys and limits (after a revoke or a limit change here)."""
        self._by_hash.clear()
        self._by_id.clear()
        self._limits_at = -1e18
        if self.escrow is not None:
            self.escrow.invalidate()

    async def authenticate(self, secret: str) -> Principal:
        validate.text("api_key", secret, 256)
        if not secret:
            raise Unauthenticated("no API key given; send it as `authorization: Bearer <key>`")
        digest = hash_secret(secret)
        hit = self._by_hash.get(digest)
        if hit is not None and time.monotonic() - hit[1] < self._s.auth_cache_ttl_s:
            key: KeyRecord | None = hit[0]
        else:
            key = await self._store.read(lambda: sql_admin.key_by_hash(digest))
            if key is not None:
                self._by_hash[digest] = (key, time.monotonic())
        prefix = secret[:10]
        return require_active(key, self._clock.now_us(), f"(prefix {prefix!r})").principal()

    async def key(self, key_id: str) -> KeyRecord:
        validate.text("key_id", key_id, 64, required=True)
        hit = self._by_id.get(key_id)
        if hit is not None and time.monotonic() - hit[1] < self._s.auth_cache_ttl_s:
            key: KeyRecord | None = hit[0]
        else:
            key = await self._store.read(lambda: load_key_by_id(key_id))
            if key is not None:
                self._by_id[key_id] = (key, time.monotonic())
        return require_active(key, self._clock.now_us(), repr(key_id))

    async def headroom(self, key_id: str, project: str) -> tuple[list[Headroom], float]:
        validate.text("key_id", key_id, 64, required=True)
        validate.text("project", project, 128)
        project = bound_project(await self.key(key_id), project)
        now = self._clock.now_us()
        rows = await self._store.read(lambda: sql_data.headroom(key_id, project, now))
        return rows, min((h.remaining_fraction for h in rows), default=1.0)

    def _ttl_us(self, ttl_s: float) -> int:
        if ttl_s < 0 or ttl_s > self._s.max_reservation_ttl_s:
            raise InvalidArgument(
                f"ttl must be between 0 and {self._s.max_reservation_ttl_s:g}s (0 = the default "
                f"{self._s.reservation_ttl_s:g}s), got {ttl_s:g}s"
            )
        return int((ttl_s or self._s.reservation_ttl_s) * 1_000_000)

    async def _rate_checks(self, key_id: str, team_id: str, tokens: int) -> list[RateCheck]:
        if time.monotonic() - self._limits_at > self._s.rate_limit_cache_ttl_s:
            rows = await self._store.read(sql_admin.all_rate_limits)
            self._limits = {f"{r.scope_kind}:{r.scope_id}": r for r in rows}
            self._limits_at = time.monotonic()
        checks = []
        for scope in (f"key:{key_id}", f"team:{team_id}"):
            lim = self._limits.get(scope)
            if lim is None:
                continue
            if lim.requests_per_minute > 0:
                checks.append(RateCheck(f"rpm:{scope}", lim.requests_per_minute, 1))
            if lim.tokens_per_minute > 0:
                checks.append(RateCheck(f"tpm:{scope}", lim.tokens_per_minute, tokens))
        return checks

    async def _apply_rate_limits(self, key: KeyRecord, tokens: int) -> list[RateCheck]:
        """Consume the key's and team's limits; returns what was consumed."""
        checks = await self._rate_checks(key.key_id, key.team_id, tokens)
        if not checks:
            return []
        denial = await self._limiter.acquire(checks)
        if denial is None:
            return checks
        if denial.retry_after_s == float("inf"):
            raise ResourceExhausted(
                f"{denial.limit_id}: this request's {tokens:,} tokens exceed the whole per-minute "
                "allowance; lower max_completion_tokens or raise the limit",
                limit_id=denial.limit_id,
            )
        resets = to_datetime(self._clock.now_us() + int(denial.retry_after_s * 1e6))
        raise ResourceExhausted(
            f"{denial.limit_id}: rate limit reached; retry after {denial.retry_after_s:.3f}s",
            limit_id=denial.limit_id, resets_at=resets, retry_after_s=denial.retry_after_s,
        )  # fmt: skip

    async def authorize(self, a: AuthorizeInput) -> Reservation:
        validate.text("tier", a.tier, 64, required=True)
        validate.text("model", a.model, 256)
        validate.text("project", a.project, 128)
        validate.text("request_id", a.request_id, 128)
        validate.tokens("estimated_prompt_tokens", a.prompt_tokens)
        validate.tokens("max_completion_tokens", a.max_completion_tokens)
        ttl_us = self._ttl_us(a.ttl_s)
        key = await self.key(a.key_id)
        a = replace(a, project=bound_project(key, a.project))
        try:
            consumed = await self._apply_rate_limits(key, a.prompt_tokens + a.max_completion_tokens)
        except ResourceExhausted:
            # A retry of an Authorize that already succeeded gets its hold
            # back (idempotency), even though its first attempt used the limit.
            earlier = await self._earlier(a)
            if earlier is None:
                raise
            return earlier
        now, d = self._clock.now_us(), self._store.dialect
        try:
            if self.escrow is not None:
                result = await self.escrow.authorize(a, ttl_us, key)
            else:
                result = await self._store.write(lambda: sql_data.authorize(a, ttl_us, now, d))
        except (Unavailable, DeadlineExceeded):
            raise  # ambiguous: the hold may exist, and a retry replays it (and refunds then)
        except RationerError:
            await self._refund(consumed)  # refused outright: nothing was admitted
            raise
        # A denied request was not admitted, and a replayed one was counted
        # by its first attempt: neither may use up the rate limit.
        if isinstance(result, Denial) or result.replayed:
            await self._refund(consumed)
        if isinstance(result, Denial):
            resets = to_datetime(result.resets_at_us) if result.resets_at_us is not None else None
            retry = max(0.0, (result.resets_at_us - now) / 1e6) if result.resets_at_us is not None else None
            raise ResourceExhausted(result.description, limit_id=result.limit_id, resets_at=resets,
                                    retry_after_s=retry)  # fmt: skip
        return result

    async def _earlier(self, a: AuthorizeInput) -> Reservation | None:
        if not a.request_id:
            return None
        return await self._store.read(lambda: sql_data.existing_reservation(a.request_id, a.key_id))

    async def commit(self, c: CommitCall) -> CommitResult:
        validate.text("reservation_id", c.reservation_id, 64, required=True)
        validate.text("key_id", c.key_id, 64, required=True)
        validate.text("model", c.model, 256)
        validate.text("tier", c.tier, 64)
        validate.tokens("usage.prompt_tokens", c.prompt_tokens)
        validate.tokens("usage.completion_tokens", c.completion_tokens)
        validate.int_range("latency_ms", c.latency_ms, 0, 86_400_000)
        validate.int_range("fallbacks", c.fallbacks, 0, 16)
        validate.text("finish_note", c.finish_note, 64)
        _validate_reference(c)
        now, d = self._clock.now_us(), self._store.dialect
        res: CommitResult = await self._store.write(lambda: sql_data.commit(c, now, d))
        if not res.replayed:
            await self._refund_tokens(c.key_id, res.event.team_id, res.unused_tokens)
        return res

    async def release(self, reservation_id: str, key_id: str, reason: str = "") -> bool:
        validate.text("reservation_id", reservation_id, 64, required=True)
        validate.text("key_id", key_id, 64, required=True)
        validate.text("reason", reason, 256)
        now, d = self._clock.now_us(), self._store.dialect
        res: ReleaseResult = await self._store.write(lambda: sql_data.release(reservation_id, key_id, now, d))
        if self.escrow is not None:
            self.escrow.book.forget(reservation_id)
        await self._refund_tokens(key_id, res.team_id, res.unused_tokens)
        return res.released

    async def _refund_tokens(self, key_id: str, team_id: str, tokens: int) -> None:
        """Give back tokens-per-minute capacity a settled call did not use."""
        if tokens > 0:
            checks = await self._rate_checks(key_id, team_id, tokens)
            await self._refund([c for c in checks if c.limit_id.startswith("tpm:")])

    async def _refund(self, checks: list[RateCheck]) -> None:
        # Best effort: a lost refund only leaves the limit stricter for a
        # minute, which must never fail a money operation.
        if not checks:
            return
        try:
            await self._limiter.refund(checks)
        except Unavailable as exc:
            log.warning("rate-limit refund failed", error=exc.message)

    async def record_cache_hit(self, a: CacheHitCall) -> tuple[UsageEvent, bool]:
        """Record one served cache hit: ``(event, replayed)``.

        Before serving (``served`` unset) the hit consumes the key's and
        team's rate limits like a request, and a denial is raised so the
        answer is not served. A record replayed after it was served is
        recorded whatever the limits say: refusing it would lose an answer.
        """
        validate.text("key_id", a.key_id, 64, required=True)
        validate.text("request_id", a.request_id, 128, required=True)
        validate.text("record_id", a.record_id, 64)
        validate.text("project", a.project, 128)
        validate.text("tier", a.tier, 64)
        validate.text("model", a.model, 256)
        validate.tokens("usage.prompt_tokens", a.prompt_tokens)
        validate.tokens("usage.completion_tokens", a.completion_tokens)
        validate.int_range("latency_ms", a.latency_ms, 0, 86_400_000)
        _validate_reference(a)
        key = await self.key(a.key_id)
        a = replace(a, project=bound_project(key, a.project))
        consumed: list[RateCheck] = []
        if not a.served:
            try:
                consumed = await self._apply_rate_limits(key, a.prompt_tokens + a.completion_tokens)
            except ResourceExhausted:
                # A retry of a record that already landed is answered, not refused.
                earlier = await self._store.read(lambda: sql_hits.existing_hit(a.key_id, a.record))
                if earlier is None:
                    raise
                return earlier, True
        now = self._clock.now_us()
        try:
            ev, replayed = await self._store.write(lambda: sql_hits.record_cache_hit(a, now))
        except (Unavailable, DeadlineExceeded):
            raise  # ambiguous: it may have landed, and a retry replays it
        except RationerError:
            await self._refund(consumed)
            raise
        if replayed:
            await self._refund(consumed)
        return ev, replayed

    async def record_wrong_hit(self, key_id: str, request_id: str) -> tuple[UsageEvent, bool]:
        """Count a cache hit this key reported wrong (the cache has already
        checked that this key received it): ``(event, replayed)``."""
        validate.text("key_id", key_id, 64, required=True)
        validate.text("request_id", request_id, 128, required=True)
        now = self._clock.now_us()
        return await self._store.write(lambda: sql_hits.record_wrong_hit(key_id, request_id, now))

    async def visible_scope(self, caller: Principal | None, kind: str, scope_id: str) -> tuple[str, str]:
        """The scope a Usage caller may read: admins anything, keys their own org."""
        if caller is None or caller.is_admin:
            return kind, scope_id
        if not kind:
            return "org", caller.org_id
        org = scope_id
        if kind == "key":
            org = (await self._store.read(lambda: load_key_by_id(scope_id)) or caller).org_id
        elif kind != "org":
            org = scope_id.split("/", 1)[0]
        if org != caller.org_id:
            raise PermissionDenied(f"key {caller.key_id} may only read usage of org {caller.org_id!r}")
        return kind, scope_id


def _validate_reference(c: CommitCall | CacheHitCall) -> None:
    if c.reference_tier is not None:
        validate.text("counterfactual.tier", c.reference_tier, 64)
        validate.tokens("counterfactual.usage.prompt_tokens", c.reference_prompt_tokens)
        validate.tokens("counterfactual.usage.completion_tokens", c.reference_completion_tokens)
