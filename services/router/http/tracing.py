"""The HTTP door's SERVER span: one per request, child of the caller's W3C ``traceparent``.

Added to the application only when the router's tracing is on, so an
untraced router runs exactly the middleware it had.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry.trace import SpanKind, Status, StatusCode

from rationer.platform.tracing import NOOP_TRACER, PROPAGATOR, tracer, use_tracer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else ""


def tracing_middlewares(service: str = "router") -> list[Callable[..., Awaitable[web.StreamResponse]]]:
    """[the span middleware] while ``service`` is traced, else []."""
    t = tracer(service)
    if t is NOOP_TRACER:
        return []

    @web.middleware
    async def trace_request(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = _route(request)
        attributes = {"http.request.method": request.method, "url.path": request.path, "url.scheme": request.scheme}
        if route:
            attributes["http.route"] = route
        name = f"{request.method} {route}" if route else request.method
        # No exception events: an exception's text may quote the request.
        with t.start_as_current_span(name, context=PROPAGATOR.extract(request.headers), kind=SpanKind.SERVER,
                                     attributes=attributes, record_exception=False,
                                     set_status_on_exception=False) as span, use_tracer(t):  # fmt: skip
            try:
                resp = await handler(request)
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            span.set_attribute("http.response.status_code", resp.status)
            if resp.status >= 500:
                span.set_status(Status(StatusCode.ERROR, str(resp.status)))
            return resp

    return [trace_request]
