"""The tier lines of ``rationer up``'s banner: which tiers can serve, read from the router's ``/ready``.

An operator who passed ``--frontier-url`` to an endpoint nothing can reach
must learn it at start, not from the first request that names the tier.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


async def fetch_ready(base_url: str, *, tries: int = 5, pause_s: float = 0.5) -> dict[str, Any] | None:
    """The router's ``/ready`` body (200 or 503), or None when it does not answer."""
    async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as http:
        for attempt in range(tries):
            try:
                body: dict[str, Any] = (await http.get("/ready")).json()
                return body
            except (httpx.HTTPError, ValueError):
                if attempt + 1 < tries:
                    await asyncio.sleep(pause_s)
    return None


def readiness_lines(ready: dict[str, Any] | None) -> str:
    """Banner lines naming the ready tiers and, loudly, the ones that are not."""
    if ready is None:
        return "  tiers       : unknown (the router's /ready did not answer; see logs/router.log)\n"
    healthy = ", ".join(ready.get("healthy_tiers") or []) or "none"
    lines = f"  tiers ready : {healthy}\n"
    unready = ready.get("unready_tiers") or []
    if unready:
        lines += (f"  WARNING     : not ready: {', '.join(unready)} (its endpoint cannot be reached; check "
                  "--frontier-url and the key). Requests naming it get 503 until it answers.\n")  # fmt: skip
    return lines
