"""Input checks shared by the ledger's domain classes (precise, actionable messages)."""

from __future__ import annotations

import re

from rationer.errors import InvalidArgument

MAX_TOKENS = 10_000_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@-]{0,63}$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,189}$")


def text(field: str, value: str, max_bytes: int, *, required: bool = False) -> str:
    if required and not value:
        raise InvalidArgument(f"{field} is required")
    size = len(value.encode("utf-8"))
    if size > max_bytes:
        raise InvalidArgument(f"{field} is {size} bytes; the limit is {max_bytes}")
    return value


def tokens(field: str, value: int) -> int:
    if value < 0 or value > MAX_TOKENS:
        raise InvalidArgument(f"{field} must be between 0 and {MAX_TOKENS:,}, got {value:,}")
    return value


def name(field: str, value: str) -> str:
    if not _NAME.match(value):
        raise InvalidArgument(
            f"{field} {value!r} must be 1-64 characters of letters, digits and . _ + @ -, "
            "starting with a letter or digit"
        )
    return value


def email(value: str) -> str:
    if not _EMAIL.match(value):
        raise InvalidArgument(f"user email {value!r} is not a plain address like alice@example.com")
    return value


def int_range(field: str, value: int, low: int, high: int) -> int:
    if value < low or value > high:
        raise InvalidArgument(f"{field} must be between {low:,} and {high:,}, got {value:,}")
    return value
