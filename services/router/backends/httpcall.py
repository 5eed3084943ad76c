"""Deadline and reachability rules shared by the frontier clients (OpenAI and Anthropic wire).

Both clients must fail over from a black-holed endpoint quickly, never run a
stream past the caller's deadline, and probe readiness the same way, so the
rules live here once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx

from rationer.errors import DeadlineExceeded


def upstream_http(base_url: str, headers: dict[str, str], connect_timeout_s: float) -> httpx.AsyncClient:
    """One pooled client per endpoint; each call sets its own read timeout from its deadline."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers=headers,
        timeout=httpx.Timeout(None, connect=connect_timeout_s),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
    )


def remaining(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (monotonic); None: no deadline."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("deadline passed before the frontier model answered")
    return left


def timeout_for(deadline: float | None, connect_timeout_s: float) -> httpx.Timeout:
    # A number alone would replace the connect timeout too: a black-holed
    # endpoint would then eat the whole deadline instead of failing over.
    left = remaining(deadline)
    connect = connect_timeout_s if left is None else min(connect_timeout_s, left)
    return httpx.Timeout(left, connect=connect)


def unreachable(exc: Exception, deadline: float | None) -> bool:
    """A connect timeout with time left is an unreachable endpoint, not the caller's deadline."""
    return isinstance(exc, httpx.ConnectTimeout) and (deadline is None or time.monotonic() < deadline)


async def answers_http(http: httpx.AsyncClient, path: str, timeout_s: float) -> bool:
    """Whether the endpoint answers HTTP at all (any status: a 401 or 404 is still an endpoint).

    The readiness probe (``FrontierBackend.probe``): only a refused, reset or
    timed-out connection counts as unreachable.
    """
    try:
        await http.get(path, timeout=timeout_s)
    except httpx.TransportError:
        return False
    return True


async def lines_until(resp: httpx.Response, deadline: float | None) -> AsyncIterator[str]:
    """The response's lines, but never past ``deadline``.

    httpx's timeout applies to each read, so a slow trickle of tokens could
    otherwise run far past the caller's deadline.
    """
    lines = resp.aiter_lines()
    while True:
        try:
            # Scoped to one read (never across the yield), and unlike
            # wait_for it starts no task per line.
            async with asyncio.timeout_at(deadline):
                line = await anext(lines)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise DeadlineExceeded("the frontier stream ran past the caller's deadline") from None
        yield line
