"""structlog configuration, and the redaction every log line goes through.

``configure_logging`` is called only from entry points. It routes structlog
and stdlib logging (aiohttp, grpc, asyncio, httpx) through one processor
chain, so one rule holds for both: **no log line carries a key, a token or
prompt text, at any level** (docs/ARCHITECTURE.md, "Logging").

- :func:`redact` runs last before the renderer. Fields named like a secret
  (``authorization``, ``api_key``, ``token``...) are replaced; fields named
  like prompt text (``prompt``, ``messages``, ``content``, ``input``...) are
  replaced by their length; every other string, the event text and the
  rendered exception included, is scrubbed of Rationer keys (``rk-...``),
  bearer credentials, ``authorization: ...``/``api_key=...`` pairs and any
  value registered with :func:`register_secret` (the ledger admin token,
  frontier API keys, service tokens).
- Exceptions are rendered as plain tracebacks, without local variables
  (structlog's default rich traceback prints locals: request headers,
  prompts), and that text is scrubbed like the rest.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog

REDACTED = "[REDACTED]"
# Field names whose values are credentials, compared lower-cased with '-' as '_'.
SECRET_FIELDS = frozenset({
    "authorization", "proxy_authorization", "api_key", "apikey", "x_api_key", "key_secret", "secret",
    "token", "admin_token", "service_token", "bearer", "password", "credentials", "cookie", "set_cookie",
})  # fmt: skip
# Field names whose values are a caller's text (prompts, answers, inputs).
PROMPT_FIELDS = frozenset({
    "prompt", "prompts", "messages", "message_content", "content", "text", "texts", "input", "inputs",
    "answer", "completion", "stop", "body", "raw_body",
})  # fmt: skip

_KEY_WORDS = r"authorization|x-api-key|api[_-]?key|admin[_-]?token|service[_-]?token|password|secret"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # "Bearer <credential>" anywhere (headers, reprs, messages); "<placeholder>" hints stay.
    (re.compile(r"(?i)\b(bearer|basic)(\s+|%20)(?!<|\[REDACTED)[^\s'\",;}\]>]+"), r"\1 " + REDACTED),
    # "authorization: x", "'api_key': 'x'", "admin_token=x" (a value that is not already a scheme).
    (re.compile(rf"(?i)\b((?:{_KEY_WORDS})['\"]?\s*[:=]\s*['\"]?)(?!bearer\b|basic\b|<|\[REDACTED)[^\s'\",;}}\]]+"),
     r"\1" + REDACTED),
    # Header tuples as repr'd in gRPC metadata: ('authorization', 'x').
    (re.compile(rf"(?i)(['\"](?:{_KEY_WORDS})['\"]\s*,\s*['\"])(?!bearer\b|basic\b|\[REDACTED)[^'\"]+"),
     r"\1" + REDACTED),
    # Rationer API keys (services/ledger/admin.py: "rk-" + token_urlsafe(32)), wherever they appear.
    (re.compile(r"\brk-[A-Za-z0-9_\-]{8,}"), "rk-" + REDACTED),
    # OpenAI-style provider keys a frontier tier may hold.
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{12,}"), "sk-" + REDACTED),
)  # fmt: skip

_registered: set[str] = set()
_registered_re: re.Pattern[str] | None = None
_lock = threading.Lock()
# Values shorter than this are not scrubbed as registered secrets (they would
# garble unrelated words); real tokens are far longer.
MIN_SECRET_CHARS = 6
_MAX_DEPTH = 8


def register_secret(*values: str | None) -> None:
    """Scrub these exact values from every log line from now on (entry points call it)."""
    global _registered_re
    with _lock:
        _registered.update(v for v in values if v and len(v) >= MIN_SECRET_CHARS)
        if _registered:
            alternatives = sorted(_registered, key=len, reverse=True)
            _registered_re = re.compile("|".join(re.escape(v) for v in alternatives))


def scrub(text: str) -> str:
    """``text`` with every credential pattern and registered secret replaced."""
    if _registered_re is not None:
        text = _registered_re.sub(REDACTED, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _norm(name: object) -> str:
    return str(name).lower().replace("-", "_")


def _clean(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)
    if depth >= _MAX_DEPTH:
        return "[nested too deep]"
    if isinstance(value, Mapping):
        return {k: _field(k, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, depth + 1) for v in value]
    # Any other object is rendered by repr: scrub that text instead.
    return scrub(repr(value))


def _field(name: object, value: Any, depth: int) -> Any:
    key = _norm(name)
    if value is None:
        return None
    if key in SECRET_FIELDS:
        return REDACTED
    if key in PROMPT_FIELDS:
        return _size(value)
    return _clean(value, depth)


def _size(value: Any) -> str:
    # How much text there was helps debugging; the text itself never leaves.
    if isinstance(value, str):
        return f"[redacted: {len(value)} chars]"
    if isinstance(value, list | tuple | dict):
        return f"[redacted: {len(value)} items]"
    return "[redacted]"


def redact(_logger: Any, _method: str, event_dict: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """The structlog processor: see the module docstring."""
    return {k: v if k.startswith("_") else _field(k, v, 0) for k, v in event_dict.items()}


def _chain() -> list[structlog.typing.Processor]:
    """Everything before the renderer, shared by structlog and stdlib records."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Plain traceback text (no locals) into "exception", so redact sees it.
        structlog.processors.format_exc_info,
        redact,
    ]


def configure_logging(
    fmt: str = "console",
    level: str = "INFO",
    *,
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
    cache: bool = True,
) -> None:
    """Route stdlib and structlog output through one redacting chain and renderer.

    ``fmt`` is ``"json"`` for machines (one object per line) or ``"console"``
    for people. Context bound with ``structlog.contextvars`` (request id,
    principal) is merged into every line. ``stream`` defaults to stderr;
    ``secrets`` are registered with :func:`register_secret`. ``cache=False``
    lets a later call reconfigure loggers already used (test sessions).
    """
    out = stream if stream is not None else sys.stderr
    register_secret(*secrets)
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*_chain(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=_chain(),
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
