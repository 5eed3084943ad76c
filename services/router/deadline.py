"""Bounding one step of a call by the call's deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from rationer.errors import DeadlineExceeded


@contextlib.asynccontextmanager
async def within(deadline: float | None, doing: str) -> AsyncIterator[None]:
    """Bound a step by the call's deadline (time.monotonic, the loop's clock)."""
    try:
        async with asyncio.timeout_at(deadline):
            yield
    except TimeoutError:
        raise DeadlineExceeded(f"the deadline passed while {doing}; allow more time") from None
