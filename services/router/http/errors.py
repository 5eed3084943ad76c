"""OpenAI-shaped error responses for the HTTP front door.

Every failure leaves as ``{"error": {"message", "type", "param", "code"}}``
with the status, type, code and param the domain error carries
(``rationer/errors.py``: one table for both doors), so the official SDKs
raise their usual exception classes (``AuthenticationError``,
``RateLimitError``...). 429s carry ``Retry-After`` and name the limit.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from aiohttp import web

from rationer.errors import InvalidArgument, RationerError, ResourceExhausted
from services.router.substitute import hide_addresses

# Past this, retrying soon cannot help (a monthly budget): tell the SDKs not to.
NO_RETRY_AFTER_S = 60.0


class HttpError(InvalidArgument):
    """A failure found in the HTTP layer itself (a body that stalls or does not decode): the request's fault.

    A member of the domain-error tree, answered through the same attributes
    as every other; only its status (400, 408...) and code vary.
    """

    def __init__(self, status: int, message: str, *, code: str | None = None, close: bool = False) -> None:
        super().__init__(message)
        self.http_status, self.openai_code = status, code
        # The connection cannot be reused (an unread or undecodable body).
        self.close = close


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def retry_after_s(exc: ResourceExhausted, now: datetime) -> int:
    """Whole seconds until the limit frees up (at least 1), for ``Retry-After``.

    ``now`` comes from the door's injected clock, never the real one, so a
    reset instant in a test means the same thing on any date.
    """
    if exc.retry_after_s is not None and exc.retry_after_s > 0:
        return max(1, math.ceil(exc.retry_after_s))
    if exc.resets_at is not None:
        at = exc.resets_at if exc.resets_at.tzinfo else exc.resets_at.replace(tzinfo=UTC)
        left = (at - now).total_seconds()
        return max(1, math.ceil(left))
    return 1


def limit_message(exc: ResourceExhausted, now: datetime) -> str:
    """The domain message, completed with the limit's name and reset time."""
    parts = [exc.message.rstrip(".")]
    if exc.limit_id and exc.limit_id not in exc.message:
        parts.append(f"limit: {exc.limit_id}")
    if exc.resets_at is not None:
        if exc.resets_at.isoformat() not in exc.message:
            parts.append(f"resets at {exc.resets_at.isoformat()}")
    else:
        parts.append(f"retry in {retry_after_s(exc, now)} s")
    return "; ".join(parts)


def limit_details(
    exc: ResourceExhausted, now: datetime, *, retry_header: str = "Retry-After"
) -> tuple[str, dict[str, str]]:
    """A 429's message and headers (both doors): when to retry, whether to, and which limit."""
    wait = retry_after_s(exc, now)
    # The SDKs honour x-should-retry over their own status rules: a monthly
    # budget will not free up within their backoff.
    headers = {retry_header: str(wait), "x-should-retry": "false" if wait > NO_RETRY_AFTER_S else "true"}
    if exc.limit_id:
        headers["x-rationer-limit"] = exc.limit_id
    if exc.resets_at is not None:
        headers["x-rationer-resets-at"] = exc.resets_at.isoformat()
    return limit_message(exc, now), headers


def domain_response(exc: RationerError, now: datetime, request_id: str = "") -> web.Response:
    headers: dict[str, str] = {}
    message = exc.message
    if request_id:
        headers["x-request-id"] = request_id
    if isinstance(exc, ResourceExhausted):
        message, limit = limit_details(exc, now)
        headers.update(limit)
    # The last line of defence: no worker, ledger or upstream address reaches a client.
    message = hide_addresses(message)
    status = exc.http_status if 400 <= exc.http_status < 600 else 500
    resp = json_error(status, error_body(message, exc.openai_type, exc.openai_code, exc.param), headers)
    if isinstance(exc, HttpError) and exc.close:
        resp.force_close()
    return resp


def json_error(status: int, body: dict[str, object], headers: dict[str, str]) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json", headers=headers)


def sse_error(exc: BaseException, now: datetime) -> bytes:
    """An error after the stream started: OpenAI sends an ``error`` event, then closes."""
    if isinstance(exc, RationerError):
        msg = limit_message(exc, now) if isinstance(exc, ResourceExhausted) else exc.message
        body = error_body(hide_addresses(msg), exc.openai_type, exc.openai_code)
    else:
        body = error_body("internal error in the gateway; see its logs", "server_error")
    return b"data: " + json.dumps(body).encode() + b"\n\n"
