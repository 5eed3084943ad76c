"""Anthropic Messages request body -> plain values for the router core.

Hand-written like the OpenAI door's parser (services.router.http.schema) so
that every rejection names the field at fault, in the dotted path Anthropic's
own errors use (``messages.1.content.0.type``), and says how to fix it.
Unknown fields are ignored (SDKs add new ones faster than gateways learn
them); fields whose meaning the gateway cannot honour are refused, since
dropping them would answer something other than what was asked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rationer.errors import InvalidArgument
from services.router.types import GenParams, Message

# "system" inside messages is newer API versions' way to place instructions
# mid-conversation (the SDKs' SystemMessageParam); the core takes it as is.
ROLES = ("user", "assistant", "system")
# Refused when present and not empty: tools, extended thinking, server tools.
_UNSUPPORTED = ("tools", "tool_choice", "mcp_servers", "container")
# Block types the gateway cannot pass on yet; each gets its own hint.
_NON_TEXT_HINT = {
    "image": "image blocks are not supported by this gateway yet; send text only",
    "document": "document blocks are not supported by this gateway yet; send the text itself",
    "tool_use": "tool use is not supported by this gateway; remove tool_use blocks",
    "tool_result": "tool use is not supported by this gateway; remove tool_result blocks",
    "thinking": "thinking blocks are not supported by this gateway; remove them",
    "redacted_thinking": "thinking blocks are not supported by this gateway; remove them",
}


@dataclass(frozen=True)
class MessagesCall:
    """A validated Messages request. ``messages`` starts with the system prompt, if any, as role ``system``."""

    model: str
    messages: tuple[Message, ...]
    params: GenParams
    top_k: int | None
    stream: bool
    user: str


@dataclass(frozen=True)
class CountTokensCall:
    model: str
    messages: tuple[Message, ...]


def _bad(message: str, param: str) -> InvalidArgument:
    return InvalidArgument(f"{param}: {message}", param=param)


def _shown(value: Any) -> str:
    return json.dumps(value)[:60]


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"must be a number, got {_shown(value)}", name)
    if not low <= value <= high:
        raise _bad(f"is {value}; it must be between {low:g} and {high:g}", name)
    return float(value)


def _int(body: dict[str, Any], name: str, low: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"must be an integer, got {_shown(value)}", name)
    if value < low:
        raise _bad(f"is {value}; it must be at least {low}", name)
    return value


def _text_blocks(raw: list[Any], where: str) -> str:
    parts: list[str] = []
    for j, block in enumerate(raw):
        path = f"{where}.{j}"
        if not isinstance(block, dict):
            raise _bad('must be a content block object such as {"type": "text", "text": "..."}', path)
        kind = block.get("type")
        if kind != "text":
            hint = _NON_TEXT_HINT.get(kind) if isinstance(kind, str) else None
            raise _bad(hint or f"block type {_shown(kind)} is not supported; only 'text' blocks are", f"{path}.type")
        text = block.get("text")
        if not isinstance(text, str):
            raise _bad("must be a string", f"{path}.text")
        parts.append(text)
    return "".join(parts)


def _content(raw: Any, where: str) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        return _text_blocks(raw, where)
    raise _bad("must be a string or a list of content blocks", where)


def _system(raw: Any) -> tuple[Message, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        text = raw
    elif isinstance(raw, list):
        text = _text_blocks(raw, "system")
    else:
        raise _bad("must be a string or a list of text blocks", "system")
    return (Message("system", text),) if text else ()


def parse_messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise _bad("field required: a non-empty list of {role, content} objects", "messages")
    out: list[Message] = []
    for i, m in enumerate(raw):
        where = f"messages.{i}"
        if not isinstance(m, dict):
            raise _bad("must be an object with 'role' and 'content'", where)
        role = m.get("role")
        if role not in ROLES:
            raise _bad(f"must be 'user', 'assistant' or 'system', got {_shown(role)}", f"{where}.role")
        if "content" not in m:
            raise _bad("field required", f"{where}.content")
        out.append(Message(role, _content(m["content"], f"{where}.content")))
    return tuple(out)


def _stop_sequences(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _bad("must be a list of strings", "stop_sequences")
    for i, s in enumerate(raw):
        if not isinstance(s, str) or not s:
            raise _bad("must be a non-empty string", f"stop_sequences.{i}")
    return tuple(raw)


def _user(raw: Any) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, dict):
        raise _bad('must be an object such as {"user_id": "..."}', "metadata")
    user = raw.get("user_id")
    if user is None:
        return ""
    if not isinstance(user, str):
        raise _bad(f"must be a string, got {_shown(user)}", "metadata.user_id")
    return user


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("field required: 'auto', a tier or a model name", "model")
    return model


def _check_unsupported(body: dict[str, Any]) -> None:
    for name in _UNSUPPORTED:
        if body.get(name):
            raise _bad("is not supported by this gateway; remove it from the request", name)
    thinking = body.get("thinking")
    if thinking is not None and (not isinstance(thinking, dict) or thinking.get("type") != "disabled"):
        raise _bad("extended thinking is not supported by this gateway; remove 'thinking' or set "
                   "{\"type\": \"disabled\"}", "thinking")  # fmt: skip


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body


def parse_messages_request(body: Any) -> MessagesCall:
    """Validate a ``POST /v1/messages`` body."""
    body = _object(body)
    _check_unsupported(body)
    model = _model(body)
    max_tokens = _int(body, "max_tokens", 1)
    if max_tokens is None:
        raise _bad("field required (the Messages API has no default; e.g. 1024)", "max_tokens")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad(f"must be true or false, got {_shown(stream)}", "stream")
    top_k = _int(body, "top_k", 1)
    params = GenParams(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0.0, 1.0),
        top_p=_number(body, "top_p", 0.0, 1.0),
        stop=_stop_sequences(body.get("stop_sequences")),
        top_k=top_k,  # the core passes it to local workers and Anthropic upstreams
    )
    return MessagesCall(
        model=model,
        messages=_system(body.get("system")) + parse_messages(body.get("messages")),
        params=params,
        top_k=top_k,
        stream=bool(stream),
        user=_user(body.get("metadata")),
    )


def parse_count_tokens(body: Any) -> CountTokensCall:
    """Validate a ``POST /v1/messages/count_tokens`` body (no max_tokens, as in Anthropic's API)."""
    body = _object(body)
    _check_unsupported(body)
    return CountTokensCall(_model(body), _system(body.get("system")) + parse_messages(body.get("messages")))
