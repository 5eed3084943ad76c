"""The ``anthropic-version`` request header.

Anthropic's API requires it and answers 400 without it; the gateway does the
same so that a client that works here works against Anthropic too. Both
published versions share the Messages wire format the door speaks.
"""

from __future__ import annotations

from collections.abc import Mapping

from rationer.errors import InvalidArgument

HEADER = "anthropic-version"
SUPPORTED = ("2023-06-01", "2023-01-01")
# What the gateway sends upstream, and what the current SDKs send.
CURRENT = "2023-06-01"


def check_version(headers: Mapping[str, str]) -> str:
    """The request's version, or InvalidArgument naming the header and the versions supported."""
    value = headers.get(HEADER, "").strip()
    if not value:
        raise InvalidArgument(f"{HEADER}: header is required (use {CURRENT!r})", param=HEADER)
    if value not in SUPPORTED:
        raise InvalidArgument(
            f"{HEADER}: {value[:40]!r} is not a supported version; use one of {', '.join(SUPPORTED)}",
            param=HEADER,
        )
    return value
