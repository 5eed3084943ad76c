"""The one rule for caller-supplied request ids, shared by the gRPC and HTTP doors.

A request id names the call in every service's logs and is the ledger's
idempotency key for its first hold; the router derives its fallback
attempts' keys as ``<id>#<tier>`` (holds.attempt_id). So a caller's id is
1..64 characters of ``A-Za-z0-9._:-``: bounded, safe in logs and headers,
and never containing ``#``, so it can never equal a key the router makes for
another call's fallback. An id that breaks the rule is refused
(INVALID_ARGUMENT, HTTP 400), not replaced: a caller that sends an id relies
on it for idempotency and log joins, and a silent replacement would break
both. No id at all is fine: the gateway makes one.
"""

from __future__ import annotations

import re

from rationer.errors import AlreadyExists, InvalidArgument

MAX_REQUEST_ID_CHARS = 64
_ALLOWED = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_REQUEST_ID_CHARS}}}")
RULE = f"1-{MAX_REQUEST_ID_CHARS} characters of A-Z a-z 0-9 . _ : -"


def check_request_id(raw: str) -> str:
    """The caller's id if it keeps the rule; "" when none was sent."""
    if not raw:
        return ""
    if _ALLOWED.fullmatch(raw):
        return raw
    # The id itself is not echoed: it may be long or unprintable.
    if "#" in raw:
        raise InvalidArgument(
            f"x-request-id contains '#', which the gateway reserves for its own fallback attempts "
            f"('<id>#<tier>'); send {RULE}, or no x-request-id and the gateway makes one"
        )
    raise InvalidArgument(
        f"x-request-id must be {RULE} (got {len(raw)} characters); send a valid one, or none and the gateway makes one"
    )


def reused(request_id: str) -> AlreadyExists:
    """The error for a hold the ledger replayed: another call already used this request id.

    The router never retries an Authorize, so serving this call would ride
    on that call's hold and charge (a free answer).
    """
    return AlreadyExists(
        f"request id {request_id!r} was already used by another call; send a unique "
        "x-request-id per request, or none and the gateway makes one"
    )


MAX_FEEDBACK_REQUEST_ID = 128


def feedback_request_id(value: object) -> str:
    """The ``request_id`` of a wrong-hit report: the x-request-id of the response that came from the cache."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(
            "'request_id' must be the non-empty x-request-id of the response that came from the cache"
        )
    if len(value) > MAX_FEEDBACK_REQUEST_ID:
        raise InvalidArgument(
            f"'request_id' is {len(value)} characters; request ids are at most {MAX_FEEDBACK_REQUEST_ID}"
        )
    return value
