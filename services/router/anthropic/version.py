"""The ``anthropic-version`` request header.

Anthropic's API requires it and answers 400 without it; the gateway does the
same, so that a client that works here works against Anthropic too. Versions
are dates; every one since the first (2023-01-01) keeps the Messages wire
format the door speaks for text (later ones add fields, such as usage
details, that a client may ignore), and the SDKs send their own newest date,
so any well-formed date from the first on is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from rationer.errors import InvalidArgument

HEADER = "anthropic-version"
FIRST = "2023-01-01"
# What the gateway sends upstream: the version of the published Messages spec.
CURRENT = "2023-06-01"
_DATE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")


def check_version(headers: Mapping[str, str]) -> str:
    """The request's version, or InvalidArgument naming the header and what it accepts."""
    value = headers.get(HEADER, "").strip()
    if not value:
        raise InvalidArgument(f"{HEADER}: header is required (e.g. {CURRENT!r})", param=HEADER)
    # ISO dates compare as strings.
    if not _DATE.fullmatch(value) or value < FIRST:
        raise InvalidArgument(
            f"{HEADER}: {value[:40]!r} is not a supported version; send a date such as {CURRENT!r} (from {FIRST} on)",
            param=HEADER,
        )
    return value
