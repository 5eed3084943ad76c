"""Client for an Anthropic Messages endpoint (``kind = "anthropic"`` frontier tiers), over httpx.

It mirrors the OpenAI-compatible client (services.router.frontier): the same
plain in/out types, retries with exponential backoff and jitter only for
failures a retry can fix (connect errors, 408/409/429/5xx/529) and never past
the caller's deadline, no retry once text has reached the caller, and exact
usage or an explicit "not exact" so the core never bills $0.

Usage: Anthropic's ``input_tokens`` excludes prompt-cache reads and writes.
``prompt_tokens`` here is the whole prompt (input + cache read + cache
creation, OpenAI's meaning); the two cache fields say how much of it was read
from or written to the provider's cache, for the price catalog's own rates.
A streamed answer's exact counts come from ``message_delta`` (cumulative),
falling back to ``message_start`` for the input side.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from rationer.errors import (
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    RationerError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.router.anthropic.sse import sse_events
from services.router.anthropic.version import CURRENT
from services.router.backends.httpcall import answers_http, remaining, timeout_for, unreachable, upstream_http
from services.router.types import Completion, Delta, GenParams, Message

log = structlog.get_logger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# Anthropic's stop_reason -> the core's finish reasons (OpenAI's vocabulary).
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
# An error event before any text, of these types, is worth another try.
RETRYABLE_EVENTS = frozenset({"overloaded_error", "api_error", "rate_limit_error"})


@dataclass(frozen=True)
class AnthropicConfig:
    base_url: str  # e.g. "https://api.anthropic.com" (the client posts to /v1/messages)
    model: str
    api_key: str = ""
    version: str = CURRENT
    max_retries: int = 2
    backoff_base_s: float = 0.2
    connect_timeout_s: float = 5.0
    # A retry-after longer than this is not waited out: the 429 goes to the
    # core at once, which may fall back to another tier.
    max_retry_after_s: float = 10.0
    # Mark the system prompt cacheable (Anthropic caches only what is
    # marked, and only from about 1024 tokens up; shorter ones pass uncached).
    cache_system: bool = False


@dataclass(frozen=True)
class CachedCompletion(Completion):
    """An Anthropic answer; the prompt-cache counts are Completion's own fields (priced by the ledger)."""


@dataclass(frozen=True)
class CachedDelta(Delta):
    """The final delta of a stream, with the prompt-cache counts (Delta's own fields)."""


_USAGE_FIELDS = (
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("cache_read_input_tokens", "cache_read"),
    ("cache_creation_input_tokens", "cache_creation"),
)


@dataclass
class _Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read: int = 0
    cache_creation: int = 0
    exact: bool = False

    def update(self, raw: Any, *, final: bool) -> None:
        if not isinstance(raw, dict):
            return
        for wire, attr in _USAGE_FIELDS:
            value = raw.get(wire)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, attr, value)
        self.exact = self.exact or (final and isinstance(raw.get("output_tokens"), int))

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read + self.cache_creation


def payload(model: str, messages: Sequence[Message], params: GenParams, stream: bool,
            top_k: int | None = None, cache_system: bool = False) -> dict[str, Any]:  # fmt: skip
    """The Messages body: system messages go to the top-level ``system`` field."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": params.max_tokens,
        "messages": [{"role": m.role, "content": m.content} for m in messages if m.role != "system"],
    }
    if system and cache_system:
        body["system"] = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
    elif system:
        body["system"] = system
    if params.temperature is not None:
        # OpenAI's range is 0..2, Anthropic's 0..1: a caller of the OpenAI
        # door routed here must not get a 400 for a temperature it may use.
        body["temperature"] = min(params.temperature, 1.0)
    if params.top_p is not None:
        body["top_p"] = params.top_p
    top_k = params.top_k if top_k is None else top_k
    if top_k is not None:
        body["top_k"] = top_k
    if params.stop:
        body["stop_sequences"] = list(params.stop)
    if stream:
        body["stream"] = True
    return body


def _detail(text: str) -> str:
    """The provider's own error message, never its raw body (it may echo the prompt)."""
    try:
        data = json.loads(text)
    except ValueError:
        return f"(a {len(text)}-byte body that is not JSON)"
    err = data.get("error") if isinstance(data, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    if isinstance(message, str) and message:
        return message[:300]
    return f"(a {len(text)}-byte body without an error message)"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None  # an HTTP date: the backoff decides instead


def error_for(status: int, text: str, headers: Mapping[str, str]) -> RationerError:
    detail = _detail(text)
    if status in (400, 413):
        return InvalidArgument(f"frontier rejected the request: {detail}")
    if status == 401:
        return Unauthenticated(f"frontier rejected the gateway's credentials: {detail}")
    if status == 403:
        return PermissionDenied(f"frontier refused: {detail}")
    if status == 429:
        return ResourceExhausted(f"frontier rate limit: {detail}", limit_id="frontier",
                                 retry_after_s=_retry_after(headers))  # fmt: skip
    return Unavailable(f"frontier returned HTTP {status}: {detail}")


def _event_error(data: dict[str, Any]) -> RationerError:
    raw = data.get("error")
    err: dict[str, Any] = raw if isinstance(raw, dict) else {}
    kind, message = str(err.get("type") or "api_error"), str(err.get("message") or "")[:300]
    if kind == "rate_limit_error":
        return ResourceExhausted(f"frontier rate limit mid-stream: {message}", limit_id="frontier")
    if kind == "invalid_request_error":
        return InvalidArgument(f"frontier rejected the request mid-stream: {message}")
    return Unavailable(f"frontier stream failed ({kind}): {message}")


class _StreamEventError(Exception):
    """An ``error`` event; ``retryable`` when no text had gone out and its type may pass."""

    def __init__(self, error: RationerError, retryable: bool) -> None:
        super().__init__(error.message)
        self.error, self.retryable = error, retryable


class AnthropicClient:
    """One Anthropic Messages endpoint. Thread-unsafe; share within one loop."""

    def __init__(self, config: AnthropicConfig, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        headers = {"anthropic-version": config.version}
        if config.api_key:
            headers["x-api-key"] = config.api_key
        self._http = http or upstream_http(config.base_url, headers, config.connect_timeout_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _timeout(self, deadline: float | None) -> httpx.Timeout:
        return timeout_for(deadline, self.config.connect_timeout_s)

    async def reachable(self, timeout_s: float = 3.0) -> bool:
        return await answers_http(self._http, "/v1/models", timeout_s)

    def _payload(self, messages: Sequence[Message], params: GenParams, top_k: int | None, *,
                 stream: bool) -> dict[str, Any]:  # fmt: skip
        return payload(self.config.model, messages, params, stream, top_k, self.config.cache_system)




    def _should_retry(self, status: int, headers: Mapping[str, str], attempt: int) -> bool:
        if attempt >= self.config.max_retries:
            return False
        # Anthropic's own hint wins over the status rules, as in its SDKs.
        hint = headers.get("x-should-retry")
        if hint in ("true", "false"):
            return hint == "true"
        wait = _retry_after(headers)
        return status in RETRYABLE_STATUS and (wait is None or wait <= self.config.max_retry_after_s)

    async def _backoff(self, attempt: int, deadline: float | None, at_least_s: float | None = None) -> None:
        delay = self.config.backoff_base_s * (2**attempt) * (0.5 + random.random())
        delay = max(delay, min(at_least_s or 0.0, self.config.max_retry_after_s))
        left = remaining(deadline)
        if left is not None and delay >= left:
            raise DeadlineExceeded("deadline would pass while waiting to retry the frontier call")
        await asyncio.sleep(delay)

    async def _transport_failed(self, exc: Exception, attempt: int, deadline: float | None, sent: bool) -> None:
        """Back off for another try, or raise what the caller should see."""
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            if sent or not unreachable(exc, deadline):
                raise DeadlineExceeded("frontier call timed out at the caller's deadline") from exc
            if attempt == self.config.max_retries:
                raise Unavailable(f"frontier unreachable: connect timed out ({exc!r})") from exc
        elif sent:
            # A retry now would splice a second answer onto the first.
            raise Unavailable(f"frontier stream broke mid-answer: {exc!r}") from exc
        elif attempt == self.config.max_retries:
            raise Unavailable(f"frontier unreachable: {exc!r}") from exc
        await self._backoff(attempt, deadline)

    async def complete(
        self, messages: Sequence[Message], params: GenParams, deadline: float | None = None,
        top_k: int | None = None,
    ) -> CachedCompletion:  # fmt: skip
        body = self._payload(messages, params, top_k, stream=False)
        started = time.perf_counter()
        for attempt in range(self.config.max_retries + 1):
            try:
                async with asyncio.timeout(remaining(deadline)):
                    resp = await self._http.post("/v1/messages", json=body, timeout=self._timeout(deadline))
            except (httpx.TransportError, TimeoutError) as exc:
                await self._transport_failed(exc, attempt, deadline, sent=False)
                continue
            if resp.status_code == 200:
                return _parse_message(resp.json(), self.config.model, started)
            err = error_for(resp.status_code, resp.text, resp.headers)
            if not self._should_retry(resp.status_code, resp.headers, attempt):
                raise err
            log.warning("frontier retry", kind="anthropic", status=resp.status_code, attempt=attempt)
            await self._backoff(attempt, deadline, _retry_after(resp.headers))
        raise Unavailable("frontier retries exhausted")  # pragma: no cover - the loop returns or raises

    async def stream(
        self, messages: Sequence[Message], params: GenParams, deadline: float | None = None,
        top_k: int | None = None,
    ) -> AsyncIterator[Delta]:  # fmt: skip
        """Yield text deltas, then one final :class:`CachedDelta` with the usage.

        Retries happen only before the first text: once text has reached the
        caller, a retry would duplicate it.
        """
        body = self._payload(messages, params, top_k, stream=True)
        sent = False
        for attempt in range(self.config.max_retries + 1):
            try:
                async with self._http.stream("POST", "/v1/messages", json=body,
                                             timeout=self._timeout(deadline)) as resp:  # fmt: skip
                    if resp.status_code != 200:
                        text = (await resp.aread()).decode("utf-8", "replace")
                        if not self._should_retry(resp.status_code, resp.headers, attempt):
                            raise error_for(resp.status_code, text, resp.headers)
                        await self._backoff(attempt, deadline, _retry_after(resp.headers))
                        continue
                    async for delta in _stream_deltas(resp, self.config.model, deadline):
                        sent = sent or bool(delta.text)
                        yield delta
                    return
            except _StreamEventError as exc:
                if sent or not exc.retryable or attempt == self.config.max_retries:
                    raise exc.error from None
                await self._backoff(attempt, deadline)
            except httpx.TransportError as exc:
                await self._transport_failed(exc, attempt, deadline, sent)


def _parse_message(data: Any, default_model: str, started: float) -> CachedCompletion:
    if not isinstance(data, dict) or data.get("type") != "message":
        raise Unavailable("frontier answered 200 without a message object")
    content = data.get("content")
    blocks: list[Any] = content if isinstance(content, list) else []
    text = "".join(b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str))
    usage = _Usage()
    usage.update(data.get("usage"), final=True)
    if not usage.exact:
        # The provider answered and bills for it: failing over would pay
        # twice and charge $0. The core bills the reserved maximum instead.
        log.warning("frontier answer carried no usage; billing the reserved maximum", kind="anthropic")
    return CachedCompletion(
        text=text,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.output_tokens,
        finish_reason=FINISH.get(str(data.get("stop_reason")), "stop"),
        model=str(data.get("model") or default_model),
        model_ms=(time.perf_counter() - started) * 1000,
        usage_exact=usage.exact,
        cache_read_tokens=usage.cache_read,
        cache_creation_tokens=usage.cache_creation,
    )


async def _stream_deltas(resp: httpx.Response, default_model: str, deadline: float | None) -> AsyncIterator[Delta]:
    usage, model, finish, sent, done = _Usage(), default_model, "", False, False
    async for ev in sse_events(resp, deadline):
        kind = ev.get("type")
        if kind == "message_start" and isinstance(ev.get("message"), dict):
            model = str(ev["message"].get("model") or model)
            usage.update(ev["message"].get("usage"), final=False)
        elif kind in ("content_block_start", "content_block_delta"):
            part = ev.get("delta") if kind == "content_block_delta" else ev.get("content_block")
            text = part.get("text") if isinstance(part, dict) else None
            if isinstance(text, str) and text:
                sent = True
                # No running count: a caller that hangs up is billed by the
                # tier's counter over the text received.
                yield Delta(text=text, usage_exact=False)
        elif kind == "message_delta":
            reason = ev.get("delta", {}).get("stop_reason") if isinstance(ev.get("delta"), dict) else None
            finish = FINISH.get(str(reason), "stop") if reason else finish
            usage.update(ev.get("usage"), final=True)
        elif kind == "message_stop":
            done = True
            break
        elif kind == "error":
            error = _event_error(ev)
            retryable = not sent and str((ev.get("error") or {}).get("type")) in RETRYABLE_EVENTS
            raise _StreamEventError(error, retryable)
    if not done:
        # Closed cleanly but unfinished: billing it as complete would hand the
        # caller a truncated answer as whole.
        raise Unavailable("frontier stream ended before the answer finished (no message_stop)")
    if not usage.exact:
        log.warning("frontier stream carried no usage; billing the reserved maximum", kind="anthropic", model=model)
    yield CachedDelta(
        text="",
        final=True,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.output_tokens,
        finish_reason=finish or "stop",
        model=model,
        usage_exact=usage.exact,
        cache_read_tokens=usage.cache_read,
        cache_creation_tokens=usage.cache_creation,
    )
