"""Serving one SSE response for either door (OpenAI chunks or Anthropic events).

What a hang-up or a failure mid-stream does is the same for both wires and is
money-relevant, so it is written once: a client that goes away (aiohttp
cancels the handler) propagates out of the block, which closes the core's
stream generator; that stops generation and commits what was generated
(stream.py), or releases the hold if nothing was. A failure after the headers
went out becomes the wire's own error event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from rationer.errors import RationerError

log = structlog.get_logger(__name__)


async def serve_stream(
    request: web.Request,
    resp: web.StreamResponse,
    *,
    start: bytes,
    pump: Callable[[], Awaitable[None]],
    error_event: Callable[[Exception], bytes],
) -> web.StreamResponse:
    await resp.prepare(request)
    try:
        await resp.write(start)
        await pump()
    except asyncio.CancelledError:
        log.info("client disconnected mid-stream")
        raise
    except ConnectionResetError:
        log.info("client disconnected mid-stream")
        return resp
    except Exception as exc:
        if not isinstance(exc, RationerError):
            log.exception("stream failed")
        await resp.write(error_event(exc))
    await resp.write_eof()
    return resp
