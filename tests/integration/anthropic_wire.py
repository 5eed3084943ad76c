"""A small local server speaking Anthropic's Messages API wire format, for tests.

No Anthropic server can run here, so this one implements the published
specification of ``POST /v1/messages`` (request validation, the message
object, the streamed event sequence, prompt-caching usage, the error JSON and
statuses) independently of the gateway's own writers in
services/router/anthropic, so a test of the upstream client is not the
gateway agreeing with itself.

The "model" is deterministic: it answers ``echo:`` and the words of the last
user turn, one word per token; tokens are whitespace-separated words. A
prompt prefix up to a block marked ``cache_control`` is written to the cache
on first sight (``cache_creation_input_tokens``) and read from it afterwards
(``cache_read_input_tokens``), as the API reports it. ``faults`` scripts the
next requests' failures, one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from rationer.platform.net import free_port

VERSIONS = ("2023-06-01", "2023-01-01")
STATUS = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
          "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
          "overloaded_error": 529}  # fmt: skip


@dataclass
class Fault:
    """What the next request gets instead of a normal answer.

    ``error``: answer with this Anthropic error type (and its status) at once.
    ``midstream``: stream, then send an ``error`` event of this type after
    ``after`` text deltas. ``drop_after``: stream, then cut the connection after
    that many deltas (``garbage_after``: send undecodable data). ``no_usage``: leave usage out. ``stall_s``: wait first.
    """

    error: str = ""
    retry_after: str | None = None
    should_retry: str | None = None
    midstream: str = ""
    after: int = 0
    drop_after: int | None = None
    no_usage: bool = False
    stall_s: float = 0.0
    garbage_after: int | None = None  # send an event whose data is not JSON after that many deltas


@dataclass
class Seen:
    headers: dict[str, str]
    body: Any


@dataclass
class WireServer:
    api_key: str
    models: tuple[str, ...]
    base_url: str = ""
    faults: list[Fault] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    cached_prefixes: set[str] = field(default_factory=set)


class _Invalid(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _error(kind: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_wire"}
    return web.json_response(body, status=STATUS[kind], headers=headers or {})


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if not content:
            raise _Invalid(f"{where}: text content blocks must be non-empty")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise _Invalid(f"{where}: Input should be a valid list")
    for i, b in enumerate(content):
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise _Invalid(f"{where}.{i}: only text blocks are accepted by this server")
    return content


def _validate(body: Any, models: tuple[str, ...]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The system blocks and the turns' blocks (flattened, in order), or _Invalid."""
    if not isinstance(body, dict):
        raise _Invalid("body: Input should be an object")
    if not isinstance(body.get("max_tokens"), int) or isinstance(body["max_tokens"], bool) or body["max_tokens"] < 1:
        raise _Invalid("max_tokens: Field required (an integer >= 1)")
    for name in ("temperature", "top_p"):
        if name in body and not (isinstance(body[name], int | float) and 0 <= body[name] <= 1):
            raise _Invalid(f"{name}: Input should be between 0 and 1")
    stops = body.get("stop_sequences", [])
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _Invalid("stop_sequences: Input should be a list of strings")
    if "seed" in body or "stop" in body or "stream_options" in body:
        raise _Invalid("Extra inputs are not permitted")
    system = body.get("system")
    sys_blocks = [] if system is None else _blocks(system, "system")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Invalid("messages: at least one message is required")
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise _Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        turns.extend(_blocks(m.get("content"), f"messages.{i}.content"))
    if body.get("model") not in models:
        raise LookupError(f"model: {body.get('model')}")
    return sys_blocks, turns


def _usage(server: WireServer, blocks: list[dict[str, Any]]) -> dict[str, int]:
    """input_tokens, cache_read_input_tokens and cache_creation_input_tokens of the prompt."""
    marked = [i for i, b in enumerate(blocks) if b.get("cache_control")]
    words = [len(b["text"].split()) for b in blocks]
    cached = cut = 0
    if marked:
        cut = marked[-1] + 1
        cached = sum(words[:cut])
    prefix = json.dumps(blocks[:cut])
    read = cached if cut and prefix in server.cached_prefixes else 0
    if cut:
        server.cached_prefixes.add(prefix)
    return {"input_tokens": sum(words) - cached, "cache_read_input_tokens": read,
            "cache_creation_input_tokens": cached - read}  # fmt: skip


def _answer(body: dict[str, Any]) -> tuple[list[str], str, str | None]:
    """The answer's tokens (each with its leading space), stop_reason and stop_sequence."""
    last = body["messages"][-1]
    text = last["content"] if isinstance(last["content"], str) else "".join(b["text"] for b in last["content"])
    words = ["echo:", *text.split()]
    out: list[str] = []
    for i, w in enumerate(words):
        piece = w if i == 0 else " " + w
        for stop in body.get("stop_sequences", []):
            if stop in "".join(out) + piece:
                return out, "stop_sequence", stop
        if len(out) == body["max_tokens"]:
            return out, "max_tokens", None
        out.append(piece)
    return out, "end_turn", None


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _stream(
    request: web.Request, body: dict[str, Any], usage: dict[str, int], fault: Fault
) -> web.StreamResponse:
    tokens, reason, stop = _answer(body)
    resp = web.StreamResponse(headers={"content-type": "text/event-stream", "request-id": "req_wire"})
    await resp.prepare(request)
    start_usage = {**usage, "output_tokens": 1}
    message = {"id": "msg_wire", "type": "message", "role": "assistant", "model": body["model"], "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": {} if fault.no_usage else start_usage}  # fmt: skip
    await resp.write(_sse("message_start", {"type": "message_start", "message": message}))
    await resp.write(
        _sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
    )
    await resp.write(_sse("ping", {"type": "ping"}))
    for i, token in enumerate(tokens):
        if fault.midstream and i == fault.after:
            await resp.write(
                _sse("error", {"type": "error", "error": {"type": fault.midstream, "message": "Overloaded"}})
            )
            return resp
        if fault.garbage_after is not None and i == fault.garbage_after:
            await resp.write(b"event: content_block_delta\ndata: {not json\n\n")
            return resp
        if fault.drop_after is not None and i == fault.drop_after:
            assert request.transport is not None
            request.transport.close()
            return resp
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}}
        await resp.write(_sse("content_block_delta", delta))
    await resp.write(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
    final: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": stop}}
    if not fault.no_usage:
        final["usage"] = {"output_tokens": len(tokens)}
    await resp.write(_sse("message_delta", final))
    await resp.write(_sse("message_stop", {"type": "message_stop"}))
    await resp.write_eof()
    return resp


def _app(server: WireServer) -> web.Application:
    async def messages(request: web.Request) -> web.StreamResponse:
        server.requests.append(Seen(dict(request.headers), await request.json()))
        fault = server.faults.pop(0) if server.faults else Fault()
        await asyncio.sleep(fault.stall_s)
        if request.headers.get("x-api-key") != server.api_key:
            return _error("authentication_error", "invalid x-api-key")
        if request.headers.get("anthropic-version") not in VERSIONS:
            return _error("invalid_request_error", "anthropic-version: header is required")
        if fault.error:
            headers = {k: v for k, v in (("retry-after", fault.retry_after),
                                         ("x-should-retry", fault.should_retry)) if v is not None}  # fmt: skip
            return _error(fault.error, f"scripted {fault.error}", headers)
        body = server.requests[-1].body
        try:
            system, turns = _validate(body, server.models)
        except _Invalid as exc:
            return _error("invalid_request_error", exc.message)
        except LookupError as exc:
            return _error("not_found_error", str(exc))
        usage = _usage(server, system + turns)
        if body.get("stream"):
            return await _stream(request, body, usage, fault)
        tokens, reason, stop = _answer(body)
        content = [{"type": "text", "text": "".join(tokens)}]
        out: dict[str, Any] = {"id": "msg_wire", "type": "message", "role": "assistant", "model": body["model"],
                               "content": content, "stop_reason": reason, "stop_sequence": stop}  # fmt: skip
        if not fault.no_usage:
            out["usage"] = {**usage, "output_tokens": len(tokens)}
        return web.json_response(out, headers={"request-id": "req_wire"})

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    return app


@contextlib.asynccontextmanager
async def anthropic_wire_server(api_key: str = "sk-ant-test", models: tuple[str, ...] = ("claude-wire",)
                                ) -> AsyncIterator[WireServer]:  # fmt: skip
    """Serve on a free loopback port in this loop; the server's ``base_url`` has no /v1, as Anthropic's."""
    server = WireServer(api_key, models)
    runner = web.AppRunner(_app(server), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server.base_url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()
