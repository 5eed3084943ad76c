"""The OpenAI-compatible HTTP front door (aiohttp), inside the router process.

A second thin adapter over :class:`RouterCore`'s façade, next to the gRPC
servicer: handlers convert JSON to core requests and back, with no extra hop. aiohttp
was chosen over starlette/uvicorn by measured overhead (docs/http.md).

Streaming waits for the core's first event before sending headers, so every
failure that happens before the first token (auth, validation, allow-list,
budget, no tier) is a proper HTTP status, not an in-stream error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from rationer.errors import DeadlineExceeded, InvalidArgument, NotFound, RationerError
from rationer.platform.ports import port_busy_error, port_in_use
from services.ledger.client import LedgerClient
from services.router import access
from services.router.anthropic.door import MessagesDoor
from services.router.anthropic.openapi import full_document
from services.router.http.embeddings import embeddings_body, parse_inputs
from services.router.http.errors import domain_response, error_body, json_error, sse_error
from services.router.http.feedback import http_cache_feedback
from services.router.http.input import (
    bearer_key,
    parse_json,
    quiet_protocol_errors,
    read_body,
    text_header,
    timeout_header,
    token_list_header,
)
from services.router.http.metrics import HttpMetrics
from services.router.http.schema import ChunkWriter, completion_body, parse_chat, route_headers
from services.router.http.streaming import serve_stream
from services.router.http.tracing import tracing_middlewares
from services.router.pipeline import RouterCore
from services.router.policy import TierSpec
from services.router.request_ids import check_request_id
from services.router.settings import HttpSettings
from services.router.types import StreamEvent

log = structlog.get_logger(__name__)

EXPOSED = "x-request-id, x-rationer-tier, x-rationer-model, x-rationer-cache, x-rationer-cost-usd, " \
          "x-rationer-savings-usd, x-rationer-settlement, x-rationer-fallbacks, x-rationer-limit, " \
          "x-rationer-resets-at, retry-after"  # fmt: skip

RID = web.RequestKey("rid", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route_name(request: web.Request) -> str:
    info = request.match_info
    route = info.route if info is not None else None
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


class FrontDoor:
    """Handlers and middleware; one instance per router process."""

    def __init__(self, core: RouterCore, settings: HttpSettings, registry: CollectorRegistry | None = None,
                 ledger: LedgerClient | None = None) -> None:  # fmt: skip
        self.core = core
        self._ledger = ledger
        # The router's registry (RouterDeps.metrics), so /metrics here shows the gRPC and pipeline series too.
        self._metrics = HttpMetrics(registry if registry is not None else CollectorRegistry(auto_describe=True))
        self.settings = settings
        self.draining = False
        self._cors = set(settings.cors_origins)
        # Both doors' parts in one document.
        self._openapi = json.dumps(full_document(core.request_limits, settings)).encode()
        self._messages = MessagesDoor(core, self._json, self._deadline, lambda r: r[RID], self._add_cors)

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes,
                              middlewares=[*tracing_middlewares(), self._envelope])  # fmt: skip
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        self._messages.mount(app.router)
        # Model ids may hold a slash ("org/model", as on Hugging Face).
        app.router.add_get("/v1/models/{model:.+}", self.model)
        app.router.add_post("/v1/embeddings", self.embeddings)
        feedback = functools.partial(http_cache_feedback, self.core, bearer_key, self._json)
        app.router.add_post("/v1/cache/feedback", feedback)
        for path in ("/health", "/healthz"):
            app.router.add_get(path, self.health)
        for path in ("/ready", "/readyz"):
            app.router.add_get(path, self.ready)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/openapi.json", self.openapi)
        self._mount_console(app)
        return app

    def _mount_console(self, app: web.Application) -> None:
        from services.router.console.routes import Console, off_app

        c = self.settings.console
        if not c.enabled:
            return
        if not c.secret_value() or self._ledger is None:
            why = ("the console is off: it needs a secret to seal sessions; set [router.http.console] "
                   "secret_file (or RATIONER_ROUTER__HTTP__CONSOLE__SECRET_FILE); `rationer up` makes one")  # fmt: skip
            app.add_subapp("/console", off_app(why))
            return
        Console(c, self._ledger, self.core.clock, lambda r: r[RID], self.settings.body_timeout_s).mount(app)

    # ---- middleware: request id, errors, metrics, CORS ---------------------

    @web.middleware
    async def _envelope(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        rid, bad_id = uuid.uuid4().hex, None
        try:
            rid = check_request_id(request.headers.get("x-request-id", "")) or rid
        except InvalidArgument as exc:
            bad_id = exc
        request[RID] = rid
        with access.request("http", rid) as entry:
            try:
                resp = await self._respond(request, handler, rid, bad_id)
            except asyncio.CancelledError:
                access.finish(entry, request.method, 499, route=_route_name(request))  # the client went away
                raise
            route = _route_name(request)
            access.finish(entry, request.method, resp.status, route=route, quiet=not route.startswith("/v1"))
        self._metrics.observe(route, request.method, resp.status, time.perf_counter() - started)
        return resp

    async def _respond(
        self, request: web.Request, handler: Handler, rid: str, bad_id: InvalidArgument | None
    ) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        if request.method == "OPTIONS" and self._cors and origin:
            resp: web.StreamResponse = self._preflight(request, origin)
        elif bad_id is not None:
            resp = domain_response(InvalidArgument(bad_id.message, param="x-request-id"), self.core.clock.now(), rid)
        else:
            with structlog.contextvars.bound_contextvars(request_id=rid, path=request.path):
                resp = await self._guarded(request, handler, rid)
        if not resp.prepared:
            self._add_cors(request, resp)
            if resp.keep_alive is False:
                await _send_and_close(request, resp)
        return resp

    def _add_cors(self, request: web.Request, resp: web.StreamResponse) -> None:
        origin = request.headers.get("Origin", "")
        if self._cors and origin and self._origin_ok(origin):
            resp.headers["Access-Control-Allow-Origin"] = origin if "*" not in self._cors else "*"
            resp.headers["Access-Control-Expose-Headers"] = EXPOSED
            resp.headers["Vary"] = "Origin"

    async def _guarded(self, request: web.Request, handler: Handler, rid: str) -> web.StreamResponse:
        try:
            return await handler(request)
        except RationerError as exc:
            access.failed(exc)
            if exc.http_status >= 500:
                log.warning("request failed", status=exc.http_status, error=exc.message)
            return domain_response(exc, self.core.clock.now(), rid)
        except web.HTTPException as exc:
            # aiohttp's own refusals (no route, wrong method, body too large).
            message = exc.text or exc.reason
            if exc.status == 404:
                message = (f"no such path: {request.method} {request.path}; the API is under /v1 "
                           "(chat/completions, completions, embeddings, models); see /openapi.json")  # fmt: skip
            if exc.status == 413:
                message = f"request body is larger than {self.settings.max_body_bytes} bytes"
            body = error_body(message, "invalid_request_error", "not_found" if exc.status == 404 else None)
            headers = {"x-request-id": rid}
            if "Allow" in exc.headers:
                headers["Allow"] = exc.headers["Allow"]
            return json_error(exc.status, body, headers)
        except Exception:
            log.exception("unhandled error in HTTP handler")
            return json_error(500, error_body("internal error in the gateway", "server_error"), {"x-request-id": rid})

    def _origin_ok(self, origin: str) -> bool:
        return "*" in self._cors or origin in self._cors

    def _preflight(self, request: web.Request, origin: str) -> web.Response:
        if not self._origin_ok(origin):
            return json_error(403, error_body(f"origin {origin!r} is not allowed", "permission_error"), {})
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": origin if "*" not in self._cors else "*",
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            # Echoed only when it is a plain list of header names.
            "Access-Control-Allow-Headers": token_list_header(
                request, "Access-Control-Request-Headers", "authorization, content-type"),
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        })  # fmt: skip

    # ---- helpers ------------------------------------------------------------

    async def _json(self, request: web.Request) -> Any:
        return parse_json(await read_body(request, self.settings.body_timeout_s))

    def _deadline(self, request: web.Request) -> float:
        asked = timeout_header(request, self.settings.request_timeout_s)
        return time.monotonic() + (asked if asked is not None else self.settings.request_timeout_s)

    @staticmethod
    def _no_cache(request: web.Request) -> bool:
        directives = request.headers.get("Cache-Control", "").lower()
        return "no-cache" in directives or "no-store" in directives

    # ---- chat -----------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        # A bad key is 401 before any body is read (the core's own check then
        # hits the auth cache).
        key = bearer_key(request)
        await self.core.principal(key)
        project, deadline = text_header(request, "x-rationer-project"), self._deadline(request)
        call = parse_chat(await self._json(request), project=project, no_cache=self._no_cache(request))
        rid = request[RID]
        if call.stream:
            events = self.core.stream(key, call.request, request_id=rid, deadline=deadline,
                                      allow_restart=call.allow_restart)  # fmt: skip
            writer = ChunkWriter(rid, int(self.core.clock.time()), call.requested_model, call.include_usage)
            return await self._stream(request, events, writer)
        text, res = await self.core.complete(key, call.request, request_id=rid, deadline=deadline)
        payload = json.dumps(completion_body(text, res, int(self.core.clock.time()))).encode()
        return web.Response(body=payload, content_type="application/json", headers=route_headers(res))

    async def _stream(
        self, request: web.Request, events: AsyncGenerator[StreamEvent, None], writer: ChunkWriter
    ) -> web.StreamResponse:
        async with contextlib.aclosing(events):
            # Errors up to the first event propagate: the middleware answers
            # them with a real status code, as the non-streaming path does.
            first = await anext(events)
            resp = web.StreamResponse(headers={
                "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no", "x-request-id": writer.request_id,
            })  # fmt: skip
            self._add_cors(request, resp)  # headers go out now, before the middleware sees it
            return await serve_stream(
                request, resp, start=writer.delta("", first=True),
                pump=lambda: self._pump(resp, first, events, writer),
                error_event=lambda exc: sse_error(exc, self.core.clock.now()),
            )

    async def _pump(
        self, resp: web.StreamResponse, ev: StreamEvent, events: AsyncIterator[StreamEvent], writer: ChunkWriter
    ) -> None:
        while True:
            if ev.final is not None:
                await resp.write(writer.final(ev.final))
                return
            await resp.write(writer.restart() if ev.restart else writer.delta(ev.delta))
            try:
                ev = await anext(events)
            except StopAsyncIteration:
                raise DeadlineExceeded("the stream ended without a final message") from None

    # ---- models, embeddings -------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        tiers = await self.core.models_for(bearer_key(request))
        return web.json_response({"object": "list", "data": _model_list(tiers)})

    async def model(self, request: web.Request) -> web.Response:
        tiers = await self.core.models_for(bearer_key(request))
        wanted = request.match_info["model"]
        for entry in _model_list(tiers):
            if entry["id"] == wanted:
                return web.json_response(entry)
        raise NotFound(f"model {wanted!r} does not exist or this key may not use it; see GET /v1/models")

    async def embeddings(self, request: web.Request) -> web.Response:
        principal = await self.core.principal(bearer_key(request))
        texts, fmt = parse_inputs(await self._json(request), self.settings.max_embedding_inputs)
        result = await self.core.embed(principal, texts, request_id=request[RID],
                                       project=request.headers.get("x-rationer-project", ""))  # fmt: skip
        out, headers = embeddings_body(result, fmt, request[RID])
        return web.json_response(out, headers=headers)

    # ---- operations ---------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(self, request: web.Request) -> web.Response:
        healthy, unready = self.core.ready(), self.core.unready()
        ok = bool(healthy) and not self.draining
        status = "ready" if ok else ("draining" if self.draining else "no healthy tier")
        # Still 200 with some tiers down (the others serve), but never listed as healthy.
        if ok and unready:
            status = "degraded"
        body = {"status": status, "healthy_tiers": healthy, "unready_tiers": unready}
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self._metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")


def _model_list(tiers: tuple[TierSpec, ...]) -> list[dict[str, Any]]:
    ids = ["auto"]
    for tier in tiers:
        ids += [i for i in (tier.name, tier.model) if i not in ids]
    return [{"id": i, "object": "model", "created": 0, "owned_by": "rationer"} for i in ids]


async def _send_and_close(request: web.Request, resp: web.StreamResponse) -> None:
    """Send a refusal whose body cannot be read on (stalled, undecodable), then close.

    Left to aiohttp, the connection would first be drained for the lingering
    time, holding a stalled client past the body timeout.
    """
    with contextlib.suppress(ConnectionError):
        await resp.prepare(request)
        await resp.write_eof()
    if request.transport is not None:
        request.transport.close()  # after the buffered response is flushed


class HttpRunner:
    """What ``start_http`` returns: the bound port and a ``stop``."""

    def __init__(self, runner: web.AppRunner, door: FrontDoor, host: str, port: int) -> None:
        self._runner, self.door, self.host, self.port = runner, door, host, port
        self._stopped = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Stop taking requests; in-flight ones get ``shutdown_timeout_s`` to finish."""
        if self._stopped:
            return
        self._stopped = True
        self.door.draining = True
        await self._runner.cleanup()


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"http listen address {listen!r} must be host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


async def start_http(
    core: RouterCore, settings: HttpSettings, registry: CollectorRegistry | None = None,
    ledger: LedgerClient | None = None,
) -> HttpRunner:
    """Serve the front door on ``settings.listen`` (port 0 picks a free one); /metrics serves ``registry``.

    ``ledger`` (the router's ledger client) serves the console at /console; without it the console is off.
    """
    door = FrontDoor(core, settings, registry, ledger)
    # handler_cancellation: a client that disconnects cancels its handler, so
    # generation stops at once and is settled for what it produced. The body
    # timeout also bounds a connection that stalls in its headers or sits idle
    # (keepalive_timeout), and how long an unread body is drained after a
    # refusal (lingering_time), so no connection is held open past it.
    quiet_protocol_errors()
    runner = web.AppRunner(door.application(), handler_cancellation=True, access_log=None,
                           keepalive_timeout=settings.body_timeout_s,
                           lingering_time=min(settings.body_timeout_s, 10.0))  # fmt: skip
    await runner.setup()
    host, port = split_listen(settings.listen)
    site = web.TCPSite(runner, host, port, backlog=1024, shutdown_timeout=settings.shutdown_timeout_s)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if port_in_use(host, port):
            raise port_busy_error(port, f"router HTTP listen {settings.listen}",
                                  "stop what holds it, or choose another (rationer up --http-port N)") from exc
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    log.info("http front door serving", host=host, port=bound)
    return HttpRunner(runner, door, host, int(bound))
