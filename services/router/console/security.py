"""Headers and error shape of every /console response; the sign-in form; safe redirects."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rationer.errors import InvalidArgument, RationerError
from rationer.platform.clock import Clock
from services.router.http.errors import domain_response, error_body, json_error
from services.router.http.input import read_body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No inline script or style, nothing from another origin, never framed.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")  # fmt: skip
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def guard_middleware(clock: Clock, rid_of: Callable[[web.Request], str]) -> Any:
    """Domain errors in the door's error JSON, aiohttp's 404/405 with a console hint, and the headers above."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except RationerError as exc:
            resp = domain_response(exc, clock.now(), rid_of(request))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = exc.text or exc.reason
            if exc.status == 404:
                message = f"no such console path: {request.method} {request.path}; pages are /console/<page>, " \
                          "their data under /console/api/"  # fmt: skip
            resp = json_error(exc.status, error_body(message, "invalid_request_error",
                                                     "not_found" if exc.status == 404 else None), {})  # fmt: skip
        for name, value in HEADERS.items():
            resp.headers.setdefault(name, value)
        return resp

    return guard


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def safe_next(path: str) -> str:
    """Where to go after sign-in: a console path only (no open redirect to another site)."""
    if path.startswith("/console/") and not path.startswith(("/console/login", "/console/logout")) \
            and "//" not in path and "\\" not in path and all(32 < ord(c) < 127 for c in path):  # fmt: skip
        return path
    return "/console/"


async def login_form(request: web.Request, as_json: bool, timeout_s: float) -> dict[str, object]:
    if as_json:
        try:
            body = json.loads(await read_body(request, timeout_s))
        except ValueError:
            raise InvalidArgument('the sign-in body must be JSON like {"api_key": "rk_..."}') from None
        if not isinstance(body, dict):
            raise InvalidArgument('the sign-in body must be JSON like {"api_key": "rk_..."}')
        return body
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise InvalidArgument("sign in with a form (application/x-www-form-urlencoded) or JSON with api_key")
    return dict(await request.post())
