"""``POST /v1/cache/feedback``: a caller flags an answer it got from the cache.

The door checks the body; ``RouterCore.report_wrong_hit`` (shared with the
gRPC ``ReportWrongHit``) authenticates the key as for a completion and hands
the report to the cache with the key's tenant and key id; the cache accepts
it only if that key received the hit (docs/cache.md, "Feedback").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rationer.errors import InvalidArgument
from services.router.pipeline import RouterCore
from services.router.request_ids import feedback_request_id


async def http_cache_feedback(
    core: RouterCore,
    api_key: Callable[[web.Request], str],
    read_json: Callable[[web.Request], Awaitable[Any]],
    request: web.Request,
) -> web.Response:
    """``POST /v1/cache/feedback`` with ``{"request_id": "<x-request-id of the cached answer>"}``.

    ``read_json`` is the door's own body reader (body timeout, encodings,
    depth and number checks), so this route refuses bad bodies as chat does.
    """
    key = api_key(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidArgument('the request body must be a JSON object: {"request_id": "..."}')
    unknown = sorted(set(body) - {"request_id"})
    if unknown:
        raise InvalidArgument(f"unknown field(s) {', '.join(map(repr, unknown))}; send only 'request_id'")
    # Checked before the key, as a body error: the core checks it again (for gRPC callers).
    report = await core.report_wrong_hit(key, feedback_request_id(body.get("request_id")))
    return web.json_response({
        "object": "cache.feedback", "request_id": body["request_id"],
        "evicted": report.evicted, "already_reported": report.already_reported,
    })  # fmt: skip
