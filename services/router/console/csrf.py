"""CSRF defence for every POST, PUT, PATCH and DELETE under /console.

Two independent checks, both required:

- the ``X-CSRF-Token`` header (or a ``csrf_token`` form field) equals
  HMAC(csrf key, the session's seed): a value another site cannot read, as the
  shell hands it out only to same-origin pages;
- a browser's ``Origin`` (when sent) names this host, and its
  ``Sec-Fetch-Site`` (when sent) is ``same-origin``.

Sign-in has no session yet, so it gets only the second check (login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from aiohttp import web

from rationer.errors import PermissionDenied
from services.router.console.session import Session, b64, derive

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEADER = "X-CSRF-Token"
FIELD = "csrf_token"


class Csrf:
    def __init__(self, secret: str) -> None:
        self._key = derive(secret, "csrf")

    def token(self, s: Session) -> str:
        return b64(hmac.new(self._key, s.csrf_seed.encode(), hashlib.sha256).digest())

    def check_token(self, s: Session, sent: str) -> None:
        if not sent:
            raise PermissionDenied(
                f"missing CSRF token: send the {HEADER} header the console page gives "
                "(GET /console/api/session returns it as csrf_token)", reason="csrf")  # fmt: skip
        if not hmac.compare_digest(sent.encode(), self.token(s).encode()):
            raise PermissionDenied(
                "wrong CSRF token for this session; reload the console page to get the current one",
                reason="csrf")  # fmt: skip


def check_origin(request: web.Request) -> None:
    """Refuse a browser request another site started (Origin / Sec-Fetch-Site)."""
    site = request.headers.get("Sec-Fetch-Site", "")
    if site and site != "same-origin":
        raise PermissionDenied(
            f"cross-site request refused (Sec-Fetch-Site: {site}); use the console page itself", reason="csrf")
    origin = request.headers.get("Origin", "")
    if origin and origin != "null":
        if urlsplit(origin).netloc.lower() != request.host.lower():
            raise PermissionDenied(f"request from origin {origin!r} refused: the console accepts changes only "
                                   f"from its own pages on {request.host}", reason="csrf")  # fmt: skip
    elif origin == "null":
        raise PermissionDenied("request from an opaque origin refused; use the console page itself", reason="csrf")
