"""The one typed domain-error tree.

Every service raises these from plain Python code. Each class carries the name
of its gRPC status code as a string so that this module needs no gRPC import;
the single server interceptor (``rationer.platform.interceptor``) maps them.
Messages are written for a person to act on.
"""

from __future__ import annotations

from datetime import datetime


class RationerError(Exception):
    """Base class. Unknown subclasses map to INTERNAL."""

    code: str = "INTERNAL"
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(RationerError):
    """``param``: the request field at fault where known (the HTTP door's OpenAI ``param``)."""

    code = "INVALID_ARGUMENT"
    http_status = 400

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class Unauthenticated(RationerError):
    code = "UNAUTHENTICATED"
    http_status = 401


class PermissionDenied(RationerError):
    """The caller may not do this. ``reason`` is a machine-readable code for
    the HTTP error body (default ``model_not_allowed``, the common case)."""

    code = "PERMISSION_DENIED"
    http_status = 403

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class NotFound(RationerError):
    code = "NOT_FOUND"
    http_status = 404


class AlreadyExists(RationerError):
    code = "ALREADY_EXISTS"
    http_status = 409


class FailedPrecondition(RationerError):
    code = "FAILED_PRECONDITION"
    http_status = 409


class ResourceExhausted(RationerError):
    """A budget, rate limit or queue denied the call.

    ``limit_id`` names the limit and ``resets_at`` says when it frees up, so a
    caller can back off precisely instead of hammering.
    """

    code = "RESOURCE_EXHAUSTED"
    http_status = 429

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


class Unavailable(RationerError):
    code = "UNAVAILABLE"
    http_status = 503


class DeadlineExceeded(RationerError):
    code = "DEADLINE_EXCEEDED"
    http_status = 504


class Cancelled(RationerError):
    code = "CANCELLED"
    http_status = 499


class Internal(RationerError):
    code = "INTERNAL"
    http_status = 500
