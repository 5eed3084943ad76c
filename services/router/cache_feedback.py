"""Wrong-hit feedback: a caller flags an answer it got from the cache.

``POST /v1/cache/feedback`` (HTTP door) and ``RouterService.ReportWrongHit``
(gRPC) both land here. The key is authenticated as for a completion; the
report goes to the cache with the key's tenant and key id, and the cache
accepts it only if that key received the hit (docs/cache.md, "Feedback").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rationer.errors import FailedPrecondition, InvalidArgument
from services.router.core import RouterCore
from services.router.ports import WrongHitReport

MAX_REQUEST_ID = 128


def _request_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(
            "'request_id' must be the non-empty x-request-id of the response that came from the cache"
        )
    if len(value) > MAX_REQUEST_ID:
        raise InvalidArgument(f"'request_id' is {len(value)} characters; request ids are at most {MAX_REQUEST_ID}")
    return value


async def report_wrong_hit(core: RouterCore, api_key: str, request_id: str) -> WrongHitReport:
    principal = await core.auth.principal(api_key)
    request_id = _request_id(request_id)
    if core.cache is None or not core.config.cache_enabled:
        raise FailedPrecondition("this gateway runs without the cache; no answer came from it")
    return await core.cache.report_wrong_hit(tenant=principal.tenant, key_id=principal.key_id, request_id=request_id)


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
    report = await report_wrong_hit(core, key, _request_id(body.get("request_id")))
    return web.json_response({
        "object": "cache.feedback", "request_id": body["request_id"],
        "evicted": report.evicted, "already_reported": report.already_reported,
    })  # fmt: skip
