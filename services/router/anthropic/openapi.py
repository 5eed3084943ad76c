"""The Messages door's part of the OpenAPI document (``GET /openapi.json``).

Written like the OpenAI door's part: it says what the parser (schema.py) and
the core's ``validate`` accept, with this router's limits filled in, so the
fuzz suite can drive the door from it. It may allow what the door then
refuses (a total prompt over the cap, an unknown model: a listed 4xx), never
forbid what the door accepts: a request the document forbids must be
refused. Refused Anthropic fields (``tools``, ``thinking``...) are left out;
any other property is allowed and ignored.
"""

from __future__ import annotations

from typing import Any

from services.router.http.openapi import NO_NUL, VISIBLE, json_body, nullable, openapi_document, ref
from services.router.settings import HttpSettings
from services.router.types import RequestLimits

_VERSION = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
ERROR = "AnthropicError"


def _content(text: dict[str, Any]) -> dict[str, Any]:
    block = {"type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"}, "text": text}}
    return {"anyOf": [text, {"type": "array", "items": block}]}


def _request(limits: RequestLimits, *, count_only: bool) -> dict[str, Any]:
    text = {"type": "string", "maxLength": limits.max_prompt_chars, "pattern": NO_NUL}
    tag = {"type": "string", "minLength": 1, "maxLength": limits.max_tag_chars}
    message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {"role": {"enum": ["user", "assistant", "system"]}, "content": _content(text)},
    }
    # The core needs one user turn with some visible text, in a string or in any of its blocks.
    visible = {**text, "pattern": VISIBLE}
    visible_block = {"type": "object", "required": ["type", "text"], "properties": {"text": visible}}
    user = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"const": "user"},
            "content": {"anyOf": [visible, {"type": "array", "contains": visible_block}]},
        },
    }
    properties: dict[str, Any] = {
        "model": {**tag, "description": "'auto', a tier or a model name the key may use"},
        "system": nullable(_content(text)),
        "messages": {
            "type": "array",
            "minItems": 1,
            "maxItems": limits.max_messages,
            "items": message,
            "contains": user,
        },
    }
    if count_only:
        return {"type": "object", "required": ["model", "messages"], "properties": properties}
    stop = {"type": "string", "minLength": 1, "maxLength": limits.max_stop_chars, "pattern": NO_NUL}
    properties.update(
        {
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": limits.max_tokens_cap},
            "temperature": nullable({"type": "number", "minimum": 0, "maximum": 1}),
            "top_p": nullable({"type": "number", "minimum": 0, "maximum": 1}),
            "top_k": nullable({"type": "integer", "minimum": 1}),
            "stop_sequences": nullable({"type": "array", "maxItems": limits.max_stop, "items": stop}),
            "stream": nullable({"type": "boolean"}),
            "metadata": nullable(
                {
                    "type": "object",
                    "properties": {"user_id": nullable({"type": "string", "maxLength": limits.max_tag_chars})},
                }
            ),
        }
    )
    return {
        "type": "object",
        "required": ["model", "max_tokens", "messages"],
        "description": "Anthropic Messages; text content blocks only (image blocks are refused with a 400).",
        "properties": properties,
    }


def schemas(limits: RequestLimits) -> dict[str, Any]:
    """Component schemas, merged into the document's ``components.schemas``."""
    nonneg = {"type": "integer", "minimum": 0}
    usage_keys = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    usage = {"type": "object", "required": list(usage_keys), "properties": dict.fromkeys(usage_keys, nonneg)}
    block = {
        "type": "object",
        "required": ["type", "text"],
        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
    }
    return {
        ERROR: {
            "type": "object",
            "required": ["type", "error"],
            "properties": {
                "type": {"const": "error"},
                "error": {
                    "type": "object",
                    "required": ["type", "message"],
                    "properties": {"type": {"type": "string"}, "message": {"type": "string", "minLength": 1}},
                },
                "request_id": {"type": "string"},
            },
        },
        "MessagesRequest": _request(limits, count_only=False),
        "CountTokensRequest": _request(limits, count_only=True),
        "Message": {
            "type": "object",
            "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
            "properties": {
                "id": {"type": "string", "pattern": "^msg_"},
                "type": {"const": "message"},
                "role": {"const": "assistant"},
                "model": {"type": "string"},
                "content": {"type": "array", "minItems": 1, "maxItems": 1, "items": block},
                "stop_reason": {"enum": ["end_turn", "max_tokens", "stop_sequence"]},
                "stop_sequence": {"type": ["string", "null"]},
                "usage": usage,
                "rationer": {"type": "object", "description": "routing record, as the OpenAI door's"},
            },
        },
        "TokenCount": {"type": "object", "required": ["input_tokens"], "properties": {"input_tokens": nonneg}},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    what = {
        400: "malformed JSON, a missing or unknown anthropic-version, or a field the gateway cannot honour",
        401: "missing, malformed or unknown key",
        403: "model or tier not in the key's allow-list",
        404: "unknown model or tier",
        408: "the body did not arrive within the body timeout",
        409: "x-request-id already used",
        413: "body over max_body_bytes",
        429: "rate limit or exhausted budget",
        504: "deadline passed",
        529: "no allowed tier is available (overloaded_error)",
    }
    return {str(s): json_body(ref(ERROR), what[s]) for s in statuses}


def full_document(limits: RequestLimits, settings: HttpSettings) -> dict[str, Any]:
    """The served ``/openapi.json``: the OpenAI door's document with this door's part merged in."""
    doc = openapi_document(limits, settings)
    doc["paths"].update(paths(limits))
    doc["components"]["schemas"].update(schemas(limits))
    return doc


def paths(limits: RequestLimits) -> dict[str, Any]:
    """Path items, merged into the document's ``paths``."""
    version = {
        "name": "anthropic-version",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "pattern": _VERSION},
        "description": "a date from 2023-01-01 on",
    }
    project = {
        "name": "X-Rationer-Project",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "maxLength": limits.max_tag_chars},
        "description": "chargeback tag",
    }
    event = {
        "type": "object",
        "required": ["event", "data"],
        "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
    }
    ok = {
        "description": "the message (JSON), or with stream: true its event stream",
        "content": {"application/json": {"schema": ref("Message")}, "text/event-stream": {"schema": event}},
    }
    return {
        "/v1/messages": {
            "post": {
                "operationId": "createMessage",
                "parameters": [version, project],
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref("MessagesRequest")}}},
                "responses": {"200": ok, **_errors(400, 401, 403, 404, 408, 409, 413, 429, 504, 529)},
            }
        },
        "/v1/messages/count_tokens": {
            "post": {
                "operationId": "countMessageTokens",
                "parameters": [version],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("CountTokensRequest")}},
                },
                "responses": {
                    "200": json_body(ref("TokenCount"), "the prompt's tokens by the target tier's tokenizer"),
                    **_errors(400, 401, 403, 404, 408, 413, 429),
                },
            }
        },
    }
