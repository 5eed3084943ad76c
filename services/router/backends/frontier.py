"""The frontier tier: a client for any OpenAI-compatible chat-completions
endpoint (httpx) and ``FrontierBackend``, the ``ModelBackend`` over it.

Streaming asks for ``stream_options.include_usage`` so that streamed calls
are billed with the provider's exact token counts, never as $0. Retries use
exponential backoff with jitter, only for errors that a retry can fix
(connect errors, 408/409/429/5xx), and never past the caller's deadline. The backend adds a small circuit breaker:
after ``trip_after`` consecutive failures the tier reports unhealthy for
``cooldown_s`` so the policy routes around it instead of paying a timeout on
every request; the first call after the cool-down probes it again.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol

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
from services.router.backends.httpcall import (
    answers_http,
    lines_until,
    remaining,
    timeout_for,
    unreachable,
    upstream_http,
)
from services.router.types import Completion, Delta, GenParams, Message

log = structlog.get_logger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class FrontierConfig:
    base_url: str  # e.g. "https://api.openai.com/v1"
    model: str
    api_key: str = ""
    max_retries: int = 2
    backoff_base_s: float = 0.2
    connect_timeout_s: float = 5.0


def _payload(model: str, messages: Sequence[Message], params: GenParams, stream: bool) -> dict[str, object]:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "max_tokens": params.max_tokens,
        "stream": stream,
    }
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


# Deliberately no x-request-id header upstream: some OpenAI-compatible
# servers validate it as a UUID and answer 400 (llama_cpp.server does), and
# the router's ids are not UUIDs when a caller supplied its own.


def _upstream_detail(text: str) -> str:
    """The provider's own error message, never its raw body.

    Error messages reach the caller and the router's log; a raw body (an HTML
    page from a proxy, a validation error listing the input) can echo the
    prompt or the gateway's credentials back.
    """
    try:
        data = json.loads(text)
    except ValueError:
        return f"(a {len(text)}-byte body that is not JSON)"
    err = data.get("error") if isinstance(data, dict) else None
    message = err.get("message") if isinstance(err, dict) else err
    if not isinstance(message, str) and isinstance(data, dict):
        message = data.get("detail")
    if isinstance(message, str) and message:
        return message[:300]
    return f"(a {len(text)}-byte body without an error message)"


def _error_for(status: int, text: str, retry_after: str | None) -> RationerError:
    detail = _upstream_detail(text)
    if status == 400:
        return InvalidArgument(f"frontier rejected the request: {detail}")
    if status in (401,):
        return Unauthenticated(f"frontier rejected the gateway's credentials: {detail}")
    if status == 403:
        return PermissionDenied(f"frontier refused: {detail}")
    if status == 429:
        secs = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
        return ResourceExhausted(f"frontier rate limit: {detail}", limit_id="frontier", retry_after_s=secs)
    return Unavailable(f"frontier returned HTTP {status}: {detail}")


class FrontierClient:
    """One OpenAI-compatible endpoint. Thread-unsafe; share within one loop."""

    def __init__(self, config: FrontierConfig, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = http or upstream_http(config.base_url, headers, config.connect_timeout_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _timeout(self, deadline: float | None) -> httpx.Timeout:
        return timeout_for(deadline, self.config.connect_timeout_s)

    async def reachable(self, timeout_s: float = 3.0) -> bool:
        return await answers_http(self._http, "/models", timeout_s)




    async def _backoff(self, attempt: int, deadline: float | None) -> None:
        delay = self.config.backoff_base_s * (2**attempt) * (0.5 + random.random())
        left = remaining(deadline)
        if left is not None and delay >= left:
            raise DeadlineExceeded("deadline would pass while waiting to retry the frontier call")
        await asyncio.sleep(delay)


    async def complete(
        self, messages: Sequence[Message], params: GenParams, deadline: float | None = None
    ) -> Completion:
        body = _payload(self.config.model, messages, params, stream=False)
        started = time.perf_counter()
        for attempt in range(self.config.max_retries + 1):
            try:
                async with asyncio.timeout(remaining(deadline)):
                    resp = await self._http.post("/chat/completions", json=body, timeout=self._timeout(deadline))
            except (httpx.TimeoutException, TimeoutError) as exc:
                if not unreachable(exc, deadline):
                    raise DeadlineExceeded("frontier call timed out at the caller's deadline") from exc
                if attempt == self.config.max_retries:
                    raise Unavailable(f"frontier unreachable: connect timed out ({exc!r})") from exc
                await self._backoff(attempt, deadline)
                continue
            except httpx.TransportError as exc:
                if attempt == self.config.max_retries:
                    raise Unavailable(f"frontier unreachable: {exc!r}") from exc
                await self._backoff(attempt, deadline)
                continue
            if resp.status_code == 200:
                return _parse_completion(resp.json(), self.config.model, started)
            err = _error_for(resp.status_code, resp.text, resp.headers.get("retry-after"))
            if resp.status_code not in RETRYABLE_STATUS or attempt == self.config.max_retries:
                raise err
            log.warning("frontier retry", status=resp.status_code, attempt=attempt)
            await self._backoff(attempt, deadline)
        raise Unavailable("frontier retries exhausted")  # pragma: no cover - loop always returns/raises

    async def stream(
        self, messages: Sequence[Message], params: GenParams, deadline: float | None = None
    ) -> AsyncIterator[Delta]:
        """Yield text deltas, then one final Delta carrying usage.

        Retries happen only before the first byte of the answer: once text has
        reached the caller, a retry would duplicate it.
        """
        body = _payload(self.config.model, messages, params, stream=True)
        sent = False
        for attempt in range(self.config.max_retries + 1):
            try:
                async with self._http.stream(
                    "POST", "/chat/completions", json=body, timeout=self._timeout(deadline)
                ) as resp:
                    if resp.status_code != 200:
                        text = (await resp.aread()).decode("utf-8", "replace")
                        err = _error_for(resp.status_code, text, resp.headers.get("retry-after"))
                        if resp.status_code in RETRYABLE_STATUS and attempt < self.config.max_retries:
                            await self._backoff(attempt, deadline)
                            continue
                        raise err
                    async for delta in _sse_deltas(resp, self.config.model, deadline):
                        sent = sent or bool(delta.text)
                        yield delta
                    return
            except httpx.TimeoutException as exc:
                if sent or not unreachable(exc, deadline):
                    raise DeadlineExceeded("frontier stream timed out at the caller's deadline") from exc
                if attempt == self.config.max_retries:
                    raise Unavailable(f"frontier unreachable: connect timed out ({exc!r})") from exc
                await self._backoff(attempt, deadline)
            except httpx.TransportError as exc:
                # Once text has gone out, a retry here would silently splice a
                # second answer onto the first: the caller decides instead.
                if sent:
                    raise Unavailable(f"frontier stream broke mid-answer: {exc!r}") from exc
                if attempt == self.config.max_retries:
                    raise Unavailable(f"frontier unreachable: {exc!r}") from exc
                await self._backoff(attempt, deadline)


def _parse_completion(data: dict[str, object], default_model: str, started: float) -> Completion:
    choices = data.get("choices") or []
    if not isinstance(choices, list) or not choices:
        raise Unavailable("frontier answered without choices")
    choice = choices[0]
    message = choice.get("message") or {}
    usage = data.get("usage") or {}
    if not isinstance(usage, dict) or "completion_tokens" not in usage:
        # The provider answered, and bills us for it: failing over here would
        # pay twice and charge $0. The core bills the hold's maximum instead.
        log.warning("frontier answer carried no usage; billing the reserved maximum")
        return Completion(
            text=str(message.get("content") or ""),
            prompt_tokens=0,
            completion_tokens=0,
            finish_reason=str(choice.get("finish_reason") or "stop"),
            model=str(data.get("model") or default_model),
            model_ms=(time.perf_counter() - started) * 1000,
            usage_exact=False,
        )
    return Completion(
        text=str(message.get("content") or ""),
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        finish_reason=str(choice.get("finish_reason") or "stop"),
        model=str(data.get("model") or default_model),
        model_ms=(time.perf_counter() - started) * 1000,
    )


async def _sse_deltas(resp: httpx.Response, default_model: str, deadline: float | None = None) -> AsyncIterator[Delta]:
    finish = ""
    usage: dict[str, int] | None = None
    model = default_model
    done = False
    async for line in lines_until(resp, deadline):
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            done = True
            break
        chunk = json.loads(payload)
        model = chunk.get("model") or model
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                # No running count: a caller that hangs up is billed by the
                # tier's counter over the text received (stream.StreamAttempt.settle_early).
                yield Delta(text=text, usage_exact=False)
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    if not done and not finish:
        # The connection closed cleanly but the answer never finished: billing
        # it as complete would hand the caller a truncated answer as whole.
        raise Unavailable("frontier stream ended before the answer finished (no finish_reason, no [DONE])")
    finish = finish or "stop"
    if usage is None:
        # Some servers (llama_cpp.server 0.3.x among them) ignore include_usage.
        # The core then bills the reserved maximum rather than $0.
        log.warning("frontier stream carried no usage; billing the reserved maximum", model=model)
        yield Delta(text="", final=True, finish_reason=finish, model=model, usage_exact=False)
        return
    yield Delta(
        text="",
        final=True,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        finish_reason=finish,
        model=model,
    )


class UpstreamConfig(Protocol):
    @property
    def model(self) -> str: ...


class UpstreamClient(Protocol):
    """What a frontier tier's client offers: ``FrontierClient`` (OpenAI) or ``AnthropicClient`` (Messages)."""

    @property
    def config(self) -> UpstreamConfig: ...

    async def reachable(self, timeout_s: float = 3.0) -> bool: ...

    def complete(self, messages: Sequence[Message], params: GenParams,
                 deadline: float | None = None) -> Awaitable[Completion]: ...  # fmt: skip

    def stream(self, messages: Sequence[Message], params: GenParams,
               deadline: float | None = None) -> AsyncIterator[Delta]: ...  # fmt: skip

    async def aclose(self) -> None: ...


class FrontierBackend:
    """One frontier tier as a ``ModelBackend`` (the model is the client's)."""

    def __init__(
        self, client: UpstreamClient, *, trip_after: int = 3, cooldown_s: float = 10.0,
        context_window: int | None = None,
    ) -> None:  # fmt: skip
        self.client = client
        self._context_window = context_window
        self._trip_after = trip_after
        self._cooldown_s = cooldown_s
        self._failures = 0
        self._open_until = 0.0
        # Set by the readiness probe (backends/probe.py); a call that succeeds sets it too.
        self.reachable = True
        self._probed = False
        self._probe_misses = 0

    def healthy(self, model: str) -> bool:
        return self.reachable and time.monotonic() >= self._open_until

    def context_window(self, model: str) -> int | None:
        """The configured context window (``tiers[].context_window``); None: unknown, the provider decides."""
        return self._context_window

    async def probe(self, misses_to_mark_down: int = 2) -> bool:
        """Probe the endpoint now; an unreachable one is not healthy until a later probe reaches it.

        The first probe (before serving) decides alone. After that a tier
        that has been answering is marked down only after consecutive misses:
        one probe timing out on a busy host must not turn away every call
        that names the tier for the next interval.
        """
        answered = await self.client.reachable()
        self._probe_misses = 0 if answered else self._probe_misses + 1
        first, self._probed = not self._probed, True
        down = not answered and (first or self._probe_misses >= misses_to_mark_down)
        was, self.reachable = self.reachable, (self.reachable or answered) and not down
        if was != self.reachable:
            log.warning("frontier endpoint " + ("reachable again" if self.reachable else "unreachable"),
                        model=self.client.config.model)  # fmt: skip
        return self.reachable

    def _ok(self) -> None:
        self._failures = 0
        self.reachable = True

    def _failed(self) -> None:
        self._failures += 1
        if self._failures >= self._trip_after:
            self._open_until = time.monotonic() + self._cooldown_s

    async def complete(
        self, model: str, messages: Sequence[Message], params: GenParams, deadline: float | None
    ) -> Completion:
        try:
            out = await self.client.complete(messages, params, deadline)
        except Unavailable:
            self._failed()
            raise
        self._ok()
        return out

    async def stream(
        self, model: str, messages: Sequence[Message], params: GenParams, deadline: float | None
    ) -> AsyncIterator[Delta]:
        try:
            async for delta in self.client.stream(messages, params, deadline):
                yield delta
        except Unavailable:
            self._failed()
            raise
        self._ok()
