"""An instant OpenAI-compatible upstream on loopback, for tests about the gateway itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


@asynccontextmanager
async def instant_frontier() -> AsyncIterator[str]:
    """An instant OpenAI-compatible upstream in this loop (the bench's); yields its /v1 base URL.

    For tests about the gateway itself (bad input, logs, fuzzing, the console), where a
    real model's latency would only slow them down. It answers every call,
    streamed or not, with the same short text and usage.
    """
    from aiohttp import web

    from bench.router_http import upstream_app
    from rationer.platform.net import free_port

    runner = web.AppRunner(upstream_app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()
