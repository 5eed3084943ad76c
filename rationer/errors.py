"""The one typed domain-error tree.

Every service raises these from plain Python code. Each class carries, as
attributes, everything a door needs to answer with it, so there is one table
and it is this module: the name of its gRPC status code as a string (so this
module needs no gRPC import; the single server interceptor,
``rationer.platform.interceptor``, maps it), the HTTP status, and the OpenAI
error ``type``, ``code`` and ``param`` the HTTP door sends. Messages are
written for a person to act on.
"""

from __future__ import annotations

from datetime import datetime


class RationerError(Exception):
    """Base class. Unknown subclasses map to INTERNAL."""

    code: str = "INTERNAL"
    http_status: int = 500
    # The OpenAI error body's "type", "code" and "param" (the HTTP door).
    openai_type: str = "server_error"
    openai_code: str | None = None
    param: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(RationerError):
    """``param``: the request field at fault where known (the HTTP door's OpenAI ``param``)."""

    code = "INVALID_ARGUMENT"
    http_status = 400
    openai_type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class Unauthenticated(RationerError):
    code = "UNAUTHENTICATED"
    http_status = 401
    openai_type = "authentication_error"
    openai_code = "invalid_api_key"


class PermissionDenied(RationerError):
    """The caller may not do this. ``reason`` is a machine-readable code for
    the HTTP error body (default ``model_not_allowed``, the common case)."""

    code = "PERMISSION_DENIED"
    http_status = 403
    openai_type = "permission_error"

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.openai_code = reason or "model_not_allowed"


class NotFound(RationerError):
    """What the caller named does not exist (on the HTTP door: a model, OpenAI's ``model_not_found``)."""

    code = "NOT_FOUND"
    http_status = 404
    openai_type = "invalid_request_error"
    openai_code = "model_not_found"
    param = "model"


class AlreadyExists(RationerError):
    code = "ALREADY_EXISTS"
    http_status = 409
    openai_type = "invalid_request_error"


class FailedPrecondition(RationerError):
    code = "FAILED_PRECONDITION"
    http_status = 409
    openai_type = "invalid_request_error"


class ResourceExhausted(RationerError):
    """A budget, rate limit or queue denied the call.

    ``limit_id`` names the limit and ``resets_at`` says when it frees up, so a
    caller can back off precisely instead of hammering.
    """

    code = "RESOURCE_EXHAUSTED"
    http_status = 429
    openai_type = "rate_limit_error"

    def __init__(
        self,
        message: str,
        *,
        limit_id: str = "",
        resets_at: datetime | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.limit_id = limit_id
        self.resets_at = resets_at
        self.retry_after_s = retry_after_s
        self.openai_code = "insufficient_quota" if limit_id.startswith("budget") else "rate_limit_exceeded"


class Unavailable(RationerError):
    code = "UNAVAILABLE"
    http_status = 503
    openai_type = "service_unavailable_error"


class DeadlineExceeded(RationerError):
    code = "DEADLINE_EXCEEDED"
    http_status = 504
    openai_type = "timeout_error"
    openai_code = "timeout"


class Cancelled(RationerError):
    code = "CANCELLED"
    http_status = 499
    openai_type = "request_cancelled"


class Internal(RationerError):
    code = "INTERNAL"
    http_status = 500
