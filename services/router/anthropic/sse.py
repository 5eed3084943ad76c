"""Reading a server-sent-events response from httpx, bounded by the caller's deadline."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from rationer.errors import Unavailable
from services.router.backends.httpcall import lines_until


def _parse(data: list[str]) -> dict[str, Any]:
    try:
        parsed = json.loads("\n".join(data))
    except ValueError:
        raise Unavailable("the frontier stream sent an event whose data is not JSON") from None
    if not isinstance(parsed, dict):
        raise Unavailable("the frontier stream sent an event whose data is not a JSON object")
    return parsed


async def sse_events(resp: httpx.Response, deadline: float | None) -> AsyncIterator[dict[str, Any]]:
    """Server-sent events' JSON data; each event's ``type`` field names it, as the spec guarantees."""
    data: list[str] = []
    async for line in lines_until(resp, deadline):
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield _parse(data)
            data = []
    if data:
        yield _parse(data)
