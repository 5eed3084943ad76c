"""Anthropic-shaped error responses for the Messages door.

Every failure leaves as ``{"type": "error", "error": {"type", "message"},
"request_id"}`` with Anthropic's status for its type, so the ``anthropic``
SDKs raise their usual classes (``RateLimitError``, ``OverloadedError``...).
Where the OpenAI door says 503, this door says 529 ``overloaded_error``:
that is what Anthropic clients expect, and retry, when capacity is short.
429s carry ``retry-after`` and name the limit, as on the OpenAI door.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

from rationer.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RationerError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.router.anthropic.response import error_event
from services.router.http.errors import limit_details, limit_message

# (status, Anthropic error type) by domain error.
DOMAIN: dict[type[RationerError], tuple[int, str]] = {
    InvalidArgument: (400, "invalid_request_error"),
    Unauthenticated: (401, "authentication_error"),
    PermissionDenied: (403, "permission_error"),
    NotFound: (404, "not_found_error"),
    # Anthropic has no 409; a conflict is still the request's fault.
    AlreadyExists: (409, "invalid_request_error"),
    FailedPrecondition: (409, "invalid_request_error"),
    ResourceExhausted: (429, "rate_limit_error"),
    Unavailable: (529, "overloaded_error"),
    DeadlineExceeded: (504, "timeout_error"),
    Cancelled: (499, "api_error"),
    Internal: (500, "api_error"),
}

# Anthropic error type by HTTP status, for failures of the HTTP layer itself
# (malformed JSON, a body over the size limit, a wrong method).
STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def status_and_type(exc: RationerError) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in DOMAIN:
            return DOMAIN[cls]
    return 500, "api_error"


def type_for_status(status: int) -> str:
    if status in STATUS_TYPES:
        return STATUS_TYPES[status]
    return "invalid_request_error" if status < 500 else "api_error"


def error_body(error_type: str, message: str, request_id: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body


def _response(status: int, body: dict[str, Any], headers: dict[str, str]) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json",
                        headers=headers)  # fmt: skip


def _id_headers(request_id: str) -> dict[str, str]:
    # Anthropic's SDKs read `request-id`; the OpenAI door's callers read `x-request-id`.
    return {"request-id": request_id, "x-request-id": request_id} if request_id else {}


def domain_response(exc: RationerError, now: datetime, request_id: str = "") -> web.Response:
    status, error_type = status_and_type(exc)
    headers = _id_headers(request_id)
    message = exc.message
    if isinstance(exc, ResourceExhausted):
        message, limit = limit_details(exc, now, retry_header="retry-after")
        headers.update(limit)
    return _response(status, error_body(error_type, message, request_id), headers)


def status_response(status: int, message: str, request_id: str = "", *, close: bool = False) -> web.Response:
    """An error found by the HTTP layer before any domain code ran."""
    resp = _response(status, error_body(type_for_status(status), message, request_id), _id_headers(request_id))
    if close:
        resp.force_close()
    return resp


def stream_error(exc: BaseException, now: datetime) -> bytes:
    """The ``error`` event for a failure after the stream started; the door closes the stream after it."""
    if not isinstance(exc, RationerError):
        return error_event("api_error", "internal error in the gateway; see its logs")
    message = limit_message(exc, now) if isinstance(exc, ResourceExhausted) else exc.message
    return error_event(status_and_type(exc)[1], message)
