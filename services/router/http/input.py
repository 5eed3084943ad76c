"""What the front door accepts from the wire, checked before anything uses it.

Everything here turns hostile input into a precise 4xx with a message a
person can act on, before it can reach the core, a protobuf encoder or a log
line: a stalled or undecodable body, JSON nested without bound, lone UTF-16
surrogates (which no encoder downstream can write), NaN/Infinity, and header
values holding raw bytes. Invariants and the tests that check them are in
docs/http.md ("Bad input").
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError, PayloadEncodingError

from rationer.errors import InvalidArgument, Unauthenticated
from rationer.platform.identity import bearer
from services.router.http.errors import HttpError

MAX_JSON_DEPTH = 32
MAX_KEY_CHARS = 512
_SURROGATE = re.compile("[\ud800-\udfff]")
# A credential is printable ASCII (Rationer keys are "rk-" + URL-safe base64).
_CREDENTIAL = re.compile(r"[\x21-\x7e]+")
# aiohttp decodes header bytes as UTF-8 with surrogateescape, so raw bytes
# that are not UTF-8 arrive as lone surrogates; control characters are no
# text either.
_NOT_TEXT = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_TOKEN_LIST = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~, -]{1,1024}")
_SECONDS = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6})?")


def well_formed_key(token: str) -> bool:
    """Whether ``token`` can be a key at all: it travels as gRPC metadata, so printable ASCII only."""
    return 0 < len(token) <= MAX_KEY_CHARS and _CREDENTIAL.fullmatch(token) is not None


def bearer_key(request: web.Request) -> str:
    """The key from ``Authorization: Bearer <key>``; 401 for anything else, before any lookup."""
    token = bearer(request.headers.get("Authorization"), where="Authorization header", header="Authorization")
    if not well_formed_key(token):
        raise Unauthenticated(
            "malformed Authorization header: the key must be printable ASCII without spaces "
            f"(at most {MAX_KEY_CHARS} characters); expected 'Bearer <rationer key>'"
        )
    return token


def text_header(request: web.Request, name: str) -> str:
    """A free-text header (a chargeback tag): UTF-8 text, no raw bytes or control characters."""
    value = request.headers.get(name, "")
    if _NOT_TEXT.search(value):
        raise InvalidArgument(
            f"header {name} holds bytes that are not UTF-8 text (or control characters); send a plain UTF-8 tag"
        )
    return value


def timeout_header(request: web.Request, cap_s: float) -> float | None:
    """``x-rationer-timeout`` in seconds (capped), None when absent."""
    raw = request.headers.get("x-rationer-timeout")
    if raw is None:
        return None
    raw = raw.strip()
    if not _SECONDS.fullmatch(raw):
        shown = raw[:40] if not _NOT_TEXT.search(raw) else "(not text)"
        raise InvalidArgument(f"x-rationer-timeout is {shown!r}; send seconds as a plain number such as 30 or 2.5")
    timeout = float(raw)
    if not timeout > 0:
        raise InvalidArgument("x-rationer-timeout must be a positive number of seconds")
    return min(timeout, cap_s)


def token_list_header(request: web.Request, name: str, default: str) -> str:
    """A header echoed back (CORS request headers): only token characters, else ``default``."""
    value = request.headers.get(name, "")
    return value if _TOKEN_LIST.fullmatch(value) else default


async def read_body(request: web.Request, timeout_s: float) -> bytes:
    """The (decompressed) body, within ``timeout_s``; 408 and a closed connection if it stalls."""
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise HttpError(
            408,
            f"the request body did not arrive within {timeout_s:g} s; send the whole body at once "
            "(a Content-Length that matches what is sent)",
            code="body_timeout",
            close=True,
        ) from None
    except (web.RequestPayloadError, PayloadEncodingError) as exc:
        # aiohttp wraps what its body parser found (bad compression, a short
        # or malformed chunked body) in RequestPayloadError.
        cause = exc.__cause__ if isinstance(exc, web.RequestPayloadError) else exc
        if isinstance(cause, ContentEncodingError):
            encoding = text_header(request, "Content-Encoding")[:20]
            raise HttpError(
                400,
                f"the request body is not valid {encoding!r} data (Content-Encoding); send it uncompressed "
                "or compress it correctly",
                close=True,
            ) from None
        raise HttpError(400, f"the request body is malformed ({type(cause).__name__}); resend it",
                        close=True) from None  # fmt: skip


def _reject_constant(name: str) -> Any:
    raise InvalidArgument(f"the request body contains {name}, which is not valid JSON; send a finite number")


def parse_json(raw: bytes) -> Any:
    """Parse and vet a JSON body: bounded depth, finite numbers, no lone surrogates."""
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise HttpError(400, f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"the request body is not valid JSON: {exc}") from exc
    problem = _first_problem(body, with_path=False)
    if problem is not None:
        where, what = _first_problem(body, with_path=True) or problem
        raise InvalidArgument(f"{where or 'the request body'} {what}")
    return body


def _first_problem(root: Any, *, with_path: bool) -> tuple[str, str] | None:
    """The first (path, problem) in ``root``, walked iteratively (no recursion to exhaust).

    The fast pass keeps no paths; only a body that fails is walked again to
    name the field.
    """
    stack: list[tuple[Any, int, str]] = [(root, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return path, (
                    "contains a lone UTF-16 surrogate (such as \\ud800); send valid Unicode "
                    "(a character outside the BMP is escaped as a surrogate pair)"
                )
        elif isinstance(node, float):
            if not math.isfinite(node):
                return path, "is a number too large to represent; send a finite number"
        elif isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                return path, f"nests JSON deeper than {MAX_JSON_DEPTH} levels; flatten it"
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if isinstance(key, str) and _SURROGATE.search(key):
                    return path, "has a field name with a lone UTF-16 surrogate; send valid Unicode"
                sub = (f"{path}.{key}" if path else str(key)) if isinstance(key, str) else f"{path}[{key}]"
                stack.append((child, depth + 1, sub if with_path else ""))
    return None


class QuietProtocolErrors(logging.Filter):
    """aiohttp logs every malformed request (bad request line, header over 8 KB,
    bad chunking) at ERROR with a traceback that quotes the offending bytes,
    which may be a credential. One line without the bytes is enough: the client
    got its 400 and the server has nothing to fix."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = f"{record.getMessage()}: malformed HTTP request refused ({type(exc).__name__}, {exc.code})"
            record.args = ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_protocol_errors() -> None:
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, QuietProtocolErrors) for f in logger.filters):
        logger.addFilter(QuietProtocolErrors())
