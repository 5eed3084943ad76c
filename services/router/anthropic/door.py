"""The Anthropic Messages door: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

A third thin adapter over :class:`RouterCore`'s façade, mounted on the same
aiohttp app as the OpenAI door (no extra hop). It shares that door's
middleware (request id, metrics, CORS) but answers its own failures in
Anthropic's error JSON, so the ``anthropic`` SDKs raise their usual classes.

As on the OpenAI door, a stream waits for the core's first event before it
sends headers, so every failure before the first token is a real status; a
failure after it is an ``error`` event. A client that hangs up cancels the
handler, which closes the core's stream: what was generated is billed
(stream.py), exactly as on the OpenAI door.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from rationer.errors import DeadlineExceeded, RationerError, Unauthenticated
from services.router.anthropic.errors import domain_response, status_response, stream_error
from services.router.anthropic.response import EventWriter, Usage, count_tokens_body, message_body
from services.router.anthropic.schema import MessagesCall, parse_count_tokens, parse_messages_request
from services.router.anthropic.version import check_version
from services.router.http.errors import HttpError
from services.router.http.input import MAX_KEY_CHARS, bearer_key, text_header
from services.router.http.schema import route_headers, route_meta
from services.router.http.streaming import serve_stream
from services.router.pipeline import RouterCore
from services.router.types import CompletionRequest, RouteResult, StreamEvent

log = structlog.get_logger(__name__)

Reader = Callable[[web.Request], Awaitable[Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# What the OpenAI door lends this one: its body reader, deadline, request id
# and CORS headers (one implementation of each for both doors).
Deadline = Callable[[web.Request], float]
RequestId = Callable[[web.Request], str]
Cors = Callable[[web.Request, web.StreamResponse], None]


def api_key(request: web.Request) -> str:
    """``x-api-key`` (Anthropic's header) or ``Authorization: Bearer``; 401 before any lookup."""
    key = request.headers.get("x-api-key")
    if key is None:
        return bearer_key(request)
    key = key.strip()
    if not key or len(key) > MAX_KEY_CHARS or not key.isascii() or not key.isprintable() or " " in key:
        raise Unauthenticated("malformed x-api-key header: send 'x-api-key: <rationer key>'")
    return key


def to_core(call: MessagesCall, *, project: str, no_cache: bool = False) -> CompletionRequest:
    return CompletionRequest(messages=call.messages, params=call.params, model=call.model, project=project,
                             user=call.user, no_cache=no_cache)  # fmt: skip


def no_cache(request: web.Request) -> bool:
    """``Cache-Control: no-cache`` (or no-store) skips the semantic cache, as on the OpenAI door."""
    directives = request.headers.get("Cache-Control", "").lower()
    return "no-cache" in directives or "no-store" in directives


def usage_of(res: RouteResult) -> Usage:
    return Usage(input_tokens=res.prompt_tokens, output_tokens=res.completion_tokens)


class MessagesDoor:
    """The two Messages handlers; errors leave in Anthropic's shape."""

    def __init__(self, core: RouterCore, read_json: Reader, deadline: Deadline, request_id: RequestId,
                 cors: Cors) -> None:  # fmt: skip
        self.core = core
        self._json, self._deadline, self._rid, self._cors = read_json, deadline, request_id, cors

    def mount(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/messages", self._anthropic_errors(self.messages))
        router.add_post("/v1/messages/count_tokens", self._anthropic_errors(self.count_tokens))

    def _anthropic_errors(self, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            rid = self._rid(request)
            try:
                return await handler(request)
            except HttpError as exc:
                return status_response(exc.http_status, exc.message, rid, close=exc.close)
            except RationerError as exc:
                if exc.http_status >= 500:
                    log.warning("request failed", status=exc.http_status, error=exc.message)
                return domain_response(exc, self.core.clock.now(), rid)
            except web.HTTPException as exc:
                return status_response(exc.status, exc.text or exc.reason, rid)
            except Exception:
                log.exception("unhandled error in the Messages door")
                return status_response(500, "internal error in the gateway; see its logs", rid)

        return wrapped

    async def _checked(self, request: web.Request) -> str:
        # A bad key is 401 before the version or the body is looked at, as upstream.
        key = api_key(request)
        await self.core.principal(key)
        check_version(request.headers)
        return key

    async def messages(self, request: web.Request) -> web.StreamResponse:
        key = await self._checked(request)
        project, deadline = text_header(request, "x-rationer-project"), self._deadline(request)
        call = parse_messages_request(await self._json(request))
        rid, core_request = self._rid(request), to_core(call, project=project, no_cache=no_cache(request))
        if call.stream:
            # A plain Anthropic client cannot drop a spliced answer: no restart.
            events = self.core.stream(key, core_request, request_id=rid, deadline=deadline, allow_restart=False)
            return await self._stream(request, events, EventWriter(rid, call.model))
        text, res = await self.core.complete(key, core_request, request_id=rid, deadline=deadline)
        body = message_body(request_id=rid, model=res.model, text=text, finish_reason=res.finish_reason,
                            usage=usage_of(res), meta=route_meta(res))  # fmt: skip
        headers = {**route_headers(res), "request-id": rid}
        return web.Response(body=json.dumps(body).encode(), content_type="application/json", headers=headers)

    async def count_tokens(self, request: web.Request) -> web.Response:
        key = await self._checked(request)
        call = parse_count_tokens(await self._json(request))
        tokens = await self.core.count_tokens(key, call.model, call.messages)
        return web.json_response(count_tokens_body(tokens), headers={"request-id": self._rid(request)})

    async def _stream(
        self, request: web.Request, events: AsyncGenerator[StreamEvent, None], writer: EventWriter
    ) -> web.StreamResponse:
        async with contextlib.aclosing(events):
            first = await anext(events)  # failures up to here get a real status
            resp = web.StreamResponse(headers={
                "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                "x-request-id": writer.request_id, "request-id": writer.request_id,
            })  # fmt: skip
            self._cors(request, resp)
            return await serve_stream(
                request, resp, start=writer.start(),
                pump=lambda: _pump(resp, first, events, writer),
                error_event=lambda exc: stream_error(exc, self.core.clock.now()),
            )


async def _pump(resp: web.StreamResponse, ev: StreamEvent, events: AsyncIterator[StreamEvent],
                writer: EventWriter) -> None:  # fmt: skip
    while True:
        if ev.final is not None:
            res = ev.final
            await resp.write(writer.finish(res.finish_reason, usage_of(res), meta=route_meta(res)))
            return
        if ev.delta:
            await resp.write(writer.delta(ev.delta))
        try:
            ev = await anext(events)
        except StopAsyncIteration:
            raise DeadlineExceeded("the stream ended without a final message") from None
