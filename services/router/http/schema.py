"""OpenAI wire format <-> the router core's plain request and result types.

Parsing is hand-written rather than a schema library so every rejection says
exactly which field is wrong and how to fix it (and it is the cheaper path:
the front door's overhead budget is a few milliseconds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rationer.errors import InvalidArgument
from services.router.types import CompletionRequest, GenParams, Message, RouteResult

# OpenAI's newer "developer" role is its name for the system prompt.
ROLE_ALIASES = {"developer": "system"}
FINISH = {"stop": "stop", "length": "length"}
# Rejected when set: silently dropping them would return something other than
# what the caller asked for. Sampling knobs the backends lack (presence and
# frequency penalties, logit_bias) are ignored instead; see docs/http.md.
_UNSUPPORTED_TRUTHY = ("tools", "functions", "logprobs", "top_logprobs", "audio", "prediction")
# `seed` travels as a protobuf int64 to the workers.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class ChatCall:
    request: CompletionRequest
    stream: bool
    include_usage: bool
    requested_model: str
    # Rationer extension: the client understands the `restart` chunk, so a
    # tier that dies mid-answer may be replaced within the stream.
    allow_restart: bool = False


def _opt(body: dict[str, Any], name: str, kinds: tuple[type, ...], what: str) -> Any:
    value = body.get(name)
    # bool is an int subclass; JSON true must not pass as a token count.
    if value is None or (isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)):
        return value
    raise InvalidArgument(f"'{name}' must be {what}, got {json.dumps(value)[:60]}", param=name)


def _content(raw: Any, i: int) -> str:
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        parts: list[str] = []
        for j, part in enumerate(raw):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidArgument(
                    f"messages[{i}].content[{j}] is not a text part; only {{'type': 'text', 'text': ...}} "
                    "parts are supported (no images or audio)", param=f"messages[{i}].content[{j}]",
                )
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidArgument(f"messages[{i}].content must be a string or a list of text parts",
                          param=f"messages[{i}].content")


def parse_messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list):
        raise InvalidArgument("'messages' is required and must be a list of {role, content} objects",
                              param="messages")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise InvalidArgument(f"messages[{i}] must be an object with a string 'role'", param=f"messages[{i}]")
        role: str = m["role"]
        role = ROLE_ALIASES.get(role, role)
        out.append(Message(role, _content(m.get("content"), i)))
    return tuple(out)


def _stop(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return tuple(raw)
    raise InvalidArgument("'stop' must be a string or a list of strings", param="stop")


def _max_tokens(body: dict[str, Any]) -> int:
    newer = _opt(body, "max_completion_tokens", (int,), "a positive integer")
    older = _opt(body, "max_tokens", (int,), "a positive integer")
    for name, given in (("max_completion_tokens", newer), ("max_tokens", older)):
        if given is not None and given < 1:
            raise InvalidArgument(f"{name} is {str(given)[:30]}; it must be at least 1", param=name)
    value = newer if newer is not None else older
    return 0 if value is None else int(value)  # 0: the core fills its default


def _seed(body: dict[str, Any]) -> int | None:
    seed: int | None = _opt(body, "seed", (int,), "an integer")
    if seed is not None and not INT64_MIN <= seed <= INT64_MAX:
        raise InvalidArgument(
            f"'seed' is {str(seed)[:30]}; it must fit in a signed 64-bit integer ({INT64_MIN}..{INT64_MAX})",
            param="seed",
        )
    return seed


def _check_unsupported(body: dict[str, Any]) -> None:
    for name in _UNSUPPORTED_TRUTHY:
        if body.get(name):
            raise InvalidArgument(f"'{name}' is not supported by this gateway; remove it from the request",
                                  param=name)
    n = _opt(body, "n", (int,), "the integer 1")
    if n is not None and n != 1:
        raise InvalidArgument(f"'n' is {str(n)[:20]}; the gateway returns exactly one choice (n=1)", param="n")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type", "text") != "text"):
        raise InvalidArgument("'response_format' other than {'type': 'text'} is not supported",
                              param="response_format")


def parse_chat(body: Any, *, project: str = "", no_cache: bool = False) -> ChatCall:
    """Validate an OpenAI chat-completions body into a core request."""
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    _check_unsupported(body)
    model = _opt(body, "model", (str,), "a string ('auto', a tier or a model name)") or "auto"
    temperature = _opt(body, "temperature", (int, float), "a number")
    top_p = _opt(body, "top_p", (int, float), "a number")
    seed = _seed(body)
    stream = bool(_opt(body, "stream", (bool,), "true or false"))
    options = _opt(body, "stream_options", (dict,), "an object") or {}
    if options and not stream:
        raise InvalidArgument("'stream_options' is only allowed when 'stream' is true", param="stream_options")
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise InvalidArgument("'stream_options.include_usage' must be true or false",
                              param="stream_options.include_usage")
    user = _opt(body, "user", (str,), "a string") or ""
    request = CompletionRequest(
        messages=parse_messages(body.get("messages")),
        params=GenParams(
            max_tokens=_max_tokens(body),
            temperature=None if temperature is None else float(temperature),
            top_p=None if top_p is None else float(top_p),
            stop=_stop(body.get("stop")),
            seed=seed,
        ),
        model=model,
        allow_cache_when_sampling=bool(_opt(body, "allow_cache_when_sampling", (bool,), "true or false")),
        no_cache=no_cache or bool(_opt(body, "no_cache", (bool,), "true or false")),
        project=project,
        user=user,
    )
    allow_restart = bool(_opt(body, "allow_restart", (bool,), "true or false"))
    return ChatCall(request, stream, include_usage and stream, model, allow_restart)


# ---- responses --------------------------------------------------------------


def usd(nano: int) -> str:
    """Exact decimal dollars from integer nano-USD (no float rounding)."""
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), 1_000_000_000)
    return f"{sign}{whole}.{frac:09d}"


def usage(res: RouteResult) -> dict[str, int]:
    return {
        "prompt_tokens": res.prompt_tokens,
        "completion_tokens": res.completion_tokens,
        "total_tokens": res.prompt_tokens + res.completion_tokens,
    }


def route_meta(res: RouteResult) -> dict[str, Any]:
    """Routing metadata; the ``rationer`` field of responses and final chunks."""
    return {
        "request_id": res.request_id,
        "tier": res.tier,
        "model": res.model,
        "cache": "hit" if res.cache_hit else "miss",
        "complexity": round(res.complexity, 4),
        "cost_usd": usd(res.cost_nano_usd),
        "cost_nano_usd": res.cost_nano_usd,
        "savings_usd": usd(res.savings_nano_usd),
        "savings_nano_usd": res.savings_nano_usd,
        "fallbacks": list(res.fallbacks),
        "downgraded": res.downgraded,
        "budget_remaining_fraction": round(res.budget_remaining_fraction, 6),
        "usage_exact": res.usage_exact,
        "settlement_pending": res.settlement_pending,
        "gateway_overhead_ms": round(res.gateway_overhead_ms, 3),
    }


def route_headers(res: RouteResult) -> dict[str, str]:
    headers = {
        "x-request-id": res.request_id,
        "x-rationer-tier": res.tier,
        "x-rationer-model": res.model,
        "x-rationer-cache": "hit" if res.cache_hit else "miss",
        "x-rationer-cost-usd": usd(res.cost_nano_usd),
        "x-rationer-savings-usd": usd(res.savings_nano_usd),
    }
    if res.settlement_pending:
        # The cost headers read 0 because the ledger has not priced the call
        # yet, not because it was free.
        headers["x-rationer-settlement"] = "pending"
    if res.fallbacks:
        # Tiers skipped or failed before the one that answered (only for keys whose policy allows it
        # when the request named a tier; substitute.py).
        headers["x-rationer-fallbacks"] = ",".join(res.fallbacks)
    return headers


def completion_id(request_id: str) -> str:
    return f"chatcmpl-{request_id}"


def completion_body(text: str, res: RouteResult, created: int) -> dict[str, Any]:
    return {
        "id": completion_id(res.request_id),
        "object": "chat.completion",
        "created": created,
        "model": res.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": FINISH.get(res.finish_reason, "stop"),
            }
        ],
        "usage": usage(res),
        "system_fingerprint": None,
        "rationer": route_meta(res),
    }


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class ChunkWriter:
    """Builds ``chat.completion.chunk`` events for one streamed answer."""

    request_id: str
    created: int
    model: str
    include_usage: bool

    def _chunk(self, choices: list[dict[str, Any]], model: str = "", **extra: Any) -> bytes:
        body: dict[str, Any] = {
            "id": completion_id(self.request_id),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": model or self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            body["usage"] = None
        body.update(extra)
        return sse(body)

    def delta(self, text: str, *, first: bool = False) -> bytes:
        delta: dict[str, Any] = {"content": text}
        if first:
            delta = {"role": "assistant", "content": text}
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def restart(self) -> bytes:
        # No OpenAI equivalent: a tier died mid-answer and another starts over.
        # Aware clients drop the text so far; see docs/http.md.
        return self._chunk(
            [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": None}], rationer={"restart": True}
        )

    def final(self, res: RouteResult) -> bytes:
        finish = FINISH.get(res.finish_reason, "stop")
        out = self._chunk(
            [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}],
            model=res.model,
            rationer=route_meta(res),
        )
        if self.include_usage:
            out += self._chunk([], model=res.model, usage=usage(res))
        return out + SSE_DONE
