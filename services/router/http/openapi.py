"""The front door's OpenAPI 3.1 document, served at ``GET /openapi.json``.

Hand-written to say exactly what the parsers accept (schema.py,
embeddings.py, the core's ``validate``), with the limits of this
router's own settings filled in, so a generator such as schemathesis can
drive the door from it: a request the document rejects must get a 4xx, and
no request may get a 5xx (tests/integration/test_http_fuzz.py). Optional
fields are nullable because the parsers treat ``null`` as "not sent". The
ignored and refused OpenAI fields (``tools``, ``logit_bias``...) are left
out: any other property is allowed and ignored.
"""

from __future__ import annotations

from typing import Any

from rationer.embedding import DIM
from services.router.embeddings import MODEL_ID
from services.router.http.embeddings import MAX_INPUT_CHARS
from services.router.http.input import MAX_JSON_DEPTH
from services.router.http.schema import INT64_MAX, INT64_MIN
from services.router.settings import HttpSettings
from services.router.types import RequestLimits

NO_NUL = "^[^\\u0000]*$"
# Some character other than white space, and no NUL anywhere.
VISIBLE = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
_SECONDS = "^[0-9]{1,6}(\\.[0-9]{1,6})?$"


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    what = {
        400: "malformed JSON or a field the gateway cannot honour", 401: "missing, malformed or unknown key",
        403: "model or tier not in the key's allow-list", 404: "unknown model, tier or path",
        408: "the body did not arrive within the body timeout", 409: "x-request-id already used",
        413: "body over max_body_bytes", 429: "rate limit or exhausted budget",
        503: "no allowed tier is available", 504: "deadline passed",
    }
    return {str(s): json_body(ref("Error"), what[s]) for s in statuses}


def _chat_request(limits: RequestLimits) -> dict[str, Any]:
    text = {"type": "string", "maxLength": limits.max_prompt_chars, "pattern": NO_NUL}
    part = {"type": "object", "required": ["type", "text"],
            "properties": {"type": {"const": "text"}, "text": text}}
    message = {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"enum": ["system", "user", "assistant", "developer"]},
            "content": {"anyOf": [text, {"type": "array", "items": part}, {"type": "null"}]},
        },
    }
    tokens = {"type": "integer", "minimum": 1, "maximum": limits.max_tokens_cap}
    stop = {"type": "string", "minLength": 1, "maxLength": limits.max_stop_chars, "pattern": NO_NUL}
    tag = {"type": "string", "maxLength": limits.max_tag_chars}
    flag = nullable({"type": "boolean"})
    return {
        "type": "object",
        "required": ["messages"],
        "description": "OpenAI chat completions; at least one non-empty user message. "
        "max_completion_tokens wins over max_tokens; the one used must be within the cap.",
        "properties": {
            "model": nullable(tag),
            "messages": {"type": "array", "minItems": 1, "maxItems": limits.max_messages, "items": message,
                         "contains": {"type": "object", "required": ["role", "content"], "properties": {
                             "role": {"const": "user"}, "content": {**text, "pattern": VISIBLE}}}},
            "max_tokens": nullable({"type": "integer", "minimum": 1}),
            "max_completion_tokens": nullable(tokens),
            "temperature": nullable({"type": "number", "minimum": 0, "maximum": 2}),
            "top_p": nullable({"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
            "stop": {"anyOf": [stop, {"type": "array", "maxItems": limits.max_stop, "items": stop},
                               {"type": "null"}]},
            "seed": nullable({"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX}),
            "stream": flag,
            "stream_options": nullable({"type": "object", "properties": {"include_usage": {"type": "boolean"}},
                                         "description": "only with stream: true"}),
            "n": nullable({"type": "integer", "minimum": 1, "maximum": 1}),
            "response_format": nullable({"type": "object", "properties": {"type": {"const": "text"}}}),
            "user": nullable(tag),
            "no_cache": flag,
            "allow_cache_when_sampling": flag,
            "allow_restart": flag,
        },
    }


def _embeddings_request(settings: HttpSettings) -> dict[str, Any]:
    text = {"type": "string", "minLength": 1, "maxLength": MAX_INPUT_CHARS, "description": "not only whitespace"}
    return {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": {"anyOf": [text, {"type": "array", "minItems": 1, "maxItems": settings.max_embedding_inputs,
                                       "items": text}]},
            "model": {"description": f"accepted as given; answered as {MODEL_ID}"},
            "encoding_format": nullable({"enum": ["float", "base64"]}),
            "dimensions": nullable({"type": "integer", "minimum": DIM, "maximum": DIM}),
        },
    }


def _route_schema() -> dict[str, Any]:
    """The ``rationer`` object of a completion: how the gateway routed and billed it."""
    return {
        "type": "object",
        "required": ["request_id", "tier", "model", "cache", "cost_usd", "cost_nano_usd", "savings_usd",
                     "savings_nano_usd", "fallbacks", "downgraded", "usage_exact", "settlement_pending"],
        "properties": {
            "request_id": {"type": "string"}, "tier": {"type": "string"}, "model": {"type": "string"},
            "cache": {"enum": ["hit", "miss"]}, "complexity": {"type": "number"},
            "cost_usd": {"type": "string", "pattern": "^-?[0-9]+\\.[0-9]{9}$"}, "cost_nano_usd": {"type": "integer"},
            "savings_usd": {"type": "string", "pattern": "^-?[0-9]+\\.[0-9]{9}$"},
            "savings_nano_usd": {"type": "integer"}, "fallbacks": {"type": "array", "items": {"type": "string"}},
            "downgraded": {"type": "boolean"}, "budget_remaining_fraction": {"type": "number"},
            "usage_exact": {"type": "boolean"}, "settlement_pending": {"type": "boolean"},
            "gateway_overhead_ms": {"type": "number"},
        },
    }


def _schemas(limits: RequestLimits, settings: HttpSettings) -> dict[str, Any]:
    nonneg = {"type": "integer", "minimum": 0}
    usage = {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
             "properties": {k: nonneg for k in ("prompt_tokens", "completion_tokens", "total_tokens")}}
    route = _route_schema()
    choice = {
        "type": "object",
        "required": ["index", "message", "finish_reason"],
        "properties": {
            "index": {"const": 0},
            "message": {"type": "object", "required": ["role", "content"],
                        "properties": {"role": {"const": "assistant"}, "content": {"type": "string"}}},
            "finish_reason": {"enum": ["stop", "length"]},
        },
    }
    model = {"type": "object", "required": ["id", "object", "owned_by"],
             "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
                            "owned_by": {"type": "string"}}}
    embedding = {"type": "object", "required": ["object", "index", "embedding"],
                 "properties": {"object": {"const": "embedding"}, "index": nonneg, "embedding": {"anyOf": [
                     {"type": "array", "items": {"type": "number"}, "minItems": DIM, "maxItems": DIM},
                     {"type": "string", "contentEncoding": "base64"}]}}}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object", "required": ["message", "type", "param", "code"],
                "properties": {"message": {"type": "string", "minLength": 1}, "type": {"type": "string"},
                               "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}},
            }},
        },
        "ChatRequest": _chat_request(limits),
        "ChatCompletion": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices", "usage", "rationer"],
            "properties": {
                "id": {"type": "string", "pattern": "^chatcmpl-"}, "object": {"const": "chat.completion"},
                "created": {"type": "integer"}, "model": {"type": "string"},
                "choices": {"type": "array", "minItems": 1, "maxItems": 1, "items": choice},
                "usage": usage, "rationer": route,
            },
        },
        "Model": model,
        "ModelList": {"type": "object", "required": ["object", "data"],
                      "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": ref("Model")}}},
        "EmbeddingsRequest": _embeddings_request(settings),
        "EmbeddingList": {"type": "object", "required": ["object", "data", "model", "usage"],
                          "properties": {"object": {"const": "list"}, "model": {"const": MODEL_ID},
                                         "data": {"type": "array", "items": embedding},
                                         "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"],
                                                   "properties": {"prompt_tokens": nonneg,
                                                                  "total_tokens": nonneg}}}},
        "Ready": {"type": "object", "required": ["status", "healthy_tiers"],
                  "properties": {"status": {"enum": ["ready", "degraded", "draining", "no healthy tier"]},
                                 "healthy_tiers": {"type": "array", "items": {"type": "string"}},
                                 "unready_tiers": {"type": "array", "items": {"type": "string"}}}},
    }


def _header(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": schema, "description": description}


def _paths(limits: RequestLimits) -> dict[str, Any]:
    chat_headers = [
        _header("X-Rationer-Project", {"type": "string", "maxLength": limits.max_tag_chars},
                "chargeback tag (UTF-8 text, no control characters)"),
        _header("x-rationer-timeout", {"type": "string", "pattern": _SECONDS},
                "a shorter deadline than the server's, in seconds (positive)"),
        _header("x-request-id", {"type": "string"},
                "your request id: 1-64 of A-Za-z0-9._:- (else one is generated); reusing one is 409"),
    ]
    # OpenAPI 3.1: the schema of a text/event-stream describes one event.
    event = {"type": "object", "required": ["data"], "properties": {
        "data": {"type": "string", "description": "a chat.completion.chunk, an error object, or [DONE]"}}}
    sse = {"text/event-stream": {"schema": event}}
    chat_ok = {"description": "the answer (JSON), or an SSE stream of chat.completion.chunk events",
               "content": {"application/json": {"schema": ref("ChatCompletion")}, **sse}}
    public: list[dict[str, list[str]]] = []
    ready = {"200": json_body(ref("Ready"), "at least one tier is healthy"),
             "503": json_body(ref("Ready"), "draining, or no tier is healthy")}
    health = {"get": {"security": public, "responses": {"200": json_body(
        {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}, "the process answers")}}}
    return {
        "/v1/chat/completions": {"post": {
            "operationId": "createChatCompletion", "parameters": chat_headers,
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref("ChatRequest")}}},
            "responses": {"200": chat_ok, **_errors(400, 401, 403, 404, 408, 409, 413, 429, 503, 504)},
        }},
        "/v1/models": {"get": {"operationId": "listModels", "responses": {
            "200": json_body(ref("ModelList"), "what this key may use"), **_errors(401)}}},
        "/v1/models/{model}": {"get": {
            "operationId": "retrieveModel",
            "parameters": [{"name": "model", "in": "path", "required": True,
                            "schema": {"type": "string", "minLength": 1}}],
            "responses": {"200": json_body(ref("Model"), "the model"), **_errors(401, 404)},
        }},
        "/v1/embeddings": {"post": {
            "operationId": "createEmbeddings",
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref("EmbeddingsRequest")}}},
            "responses": {"200": json_body(ref("EmbeddingList"), "one vector per input"),
                          **_errors(400, 401, 408, 413, 429)},
        }},
        "/v1/cache/feedback": {"post": {
            "operationId": "reportWrongCacheHit",
            "description": "Flag a cached answer this key received as wrong: the entry is evicted (docs/cache.md).",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "required": ["request_id"],
                "properties": {"request_id": {"type": "string", "minLength": 1, "maxLength": 64,
                                              "pattern": "^[A-Za-z0-9._:-]+$"}}}}}},
            "responses": {"200": json_body({"type": "object"}, "the report was taken"),
                          **_errors(400, 401, 403, 404, 408, 413, 429)},
        }},
        "/health": health, "/healthz": health,
        "/ready": {"get": {"security": public, "responses": ready}},
        "/readyz": {"get": {"security": public, "responses": ready}},
        "/metrics": {"get": {"security": public, "responses": {"200": {
            "description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"security": public,
                                  "responses": {"200": json_body({"type": "object"}, "this document")}}},
    }


def openapi_document(limits: RequestLimits, settings: HttpSettings) -> dict[str, Any]:
    """The document for a door with these limits (JSON-serialisable)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Rationer OpenAI-compatible gateway",
            "version": "1",
            "description": f"Errors are OpenAI-shaped. Bodies: at most {settings.max_body_bytes} bytes, JSON nested "
            f"at most {MAX_JSON_DEPTH} levels, no lone UTF-16 surrogates, finite numbers, sent within "
            f"{settings.body_timeout_s:g} s. See docs/http.md.",
        },
        "security": [{"bearer": []}],
        "paths": _paths(limits),
        "components": {
            "schemas": _schemas(limits, settings),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "a Rationer API key"}},
        },
    }
