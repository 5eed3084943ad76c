"""The webhook deliverer: a background task in the ledger process (like the hold sweeper).

Every ``webhook_interval_s`` it claims the due deliveries (sql.webhooks:
one replica per delivery), POSTs each body signed with its webhook's secret,
and logs the attempt. A non-2xx answer, a redirect (never followed: it could
point anywhere), a timeout or a refused connection is recorded, never
raised, and retried after ``webhook_backoff_s * 2**(attempt-1)`` (capped at
``webhook_backoff_max_s``) until ``webhook_max_attempts``. Every
``forecast_scan_interval_s`` it also runs the run-out forecast scan.
Time comes from the injected clock: tests drive retries by moving it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from functools import partial

import httpx
import structlog

from rationer.platform.clock import Clock
from services.ledger.settings import LedgerSettings
from services.ledger.sql import webhooks as sql_hooks
from services.ledger.store import Store

log = structlog.get_logger(__name__)
US = 1_000_000
SIGNATURE = "X-Rationer-Signature"
TIMESTAMP = "X-Rationer-Timestamp"


def sign(secret: str, timestamp: int, body: str) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``, the X-Rationer-Signature value."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def backoff_us(attempt: int, base_s: float, cap_s: float) -> int:
    """Delay before attempt ``attempt + 1``: base, 2 base, 4 base, ... capped."""
    return int(min(cap_s, base_s * 2 ** (attempt - 1)) * US)


class WebhookDeliverer:
    def __init__(self, store: Store, settings: LedgerSettings, clock: Clock,
                 forecast_scan: Callable[[], Awaitable[int]] | None = None) -> None:  # fmt: skip
        self._store = store
        self._s = settings
        self._clock = clock
        self._scan = forecast_scan
        self._task: asyncio.Task[None] | None = None
        self._http = httpx.AsyncClient(timeout=settings.webhook_timeout_s, follow_redirects=False,
                                       headers={"user-agent": "rationer-ledger-webhooks"})  # fmt: skip

    def set_forecast_scan(self, scan: Callable[[], Awaitable[int]]) -> None:
        self._scan = scan

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._http.aclose()

    async def _forever(self) -> None:
        next_scan = 0.0
        while True:
            await asyncio.sleep(self._s.webhook_interval_s)
            try:
                await self.deliver_once()
                if self._scan is not None and self._clock.time() >= next_scan:
                    next_scan = self._clock.time() + self._s.forecast_scan_interval_s
                    await self._scan()
            except Exception as exc:  # delivery is best effort; never let the loop die
                log.warning("webhook delivery round failed", error=str(exc))

    async def deliver_once(self, limit: int = 100) -> int:
        """Claim and send every due delivery once; returns how many were attempted."""
        now = self._clock.now_us()
        lease = now + int(self._s.webhook_lease_s * US)
        claimed = await self._store.write(partial(sql_hooks.claim_due, now, lease, limit, self._store.dialect))
        await asyncio.gather(*(self._attempt(c) for c in claimed))
        return len(claimed)

    async def _attempt(self, c: sql_hooks.Claimed) -> str:
        status, error = await self.post(c.url, c.secret, c.delivery.body)
        attempt = c.delivery.attempts
        now = self._clock.now_us()
        retry = now + backoff_us(attempt, self._s.webhook_backoff_s, self._s.webhook_backoff_max_s)
        state: str = await self._store.write(partial(
            sql_hooks.record_attempt, c.delivery.id, attempt, now, status, error, retry,
            self._s.webhook_max_attempts))  # fmt: skip
        if state != "delivered":
            log.info("webhook delivery failed", delivery=c.delivery.id, attempt=attempt, status=status,
                     error=error, state=state)  # fmt: skip
        return state

    async def send_now(self, delivery_id: str, url: str, secret: str, body: str) -> str:
        """Send a test delivery (already inserted, attempt 1) once, no retries; its final state."""
        status, error = await self.post(url, secret, body)
        return await self._store.write(partial(
            sql_hooks.record_attempt, delivery_id, 1, self._clock.now_us(), status, error, None, 1))  # fmt: skip

    async def post(self, url: str, secret: str, body: str) -> tuple[int, str]:
        """(HTTP status or 0, error or ""); never raises for the receiver's faults."""
        ts = int(self._clock.time())
        headers = {"content-type": "application/json", TIMESTAMP: str(ts), SIGNATURE: sign(secret, ts, body)}
        try:
            r = await self._http.post(url, content=body.encode(), headers=headers)
        except httpx.TimeoutException:
            return 0, f"timed out after {self._s.webhook_timeout_s:g}s"
        except httpx.HTTPError as exc:
            return 0, f"{type(exc).__name__}: {str(exc) or 'request failed'}"
        if r.is_redirect:
            return r.status_code, f"redirect to {r.headers.get('location', '?')!r} not followed"
        if not r.is_success:
            return r.status_code, f"HTTP {r.status_code}: {r.text[:200]}"
        return r.status_code, ""
