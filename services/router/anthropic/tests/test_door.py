"""The Messages door's handlers over a fake façade: statuses, error JSON and events.

The real stack is in tests/integration/test_http_messages.py; these cover the
failures a real stack cannot produce on demand (a bug in the core, a deadline,
a failure after the first token on every error type).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import httpx
import pytest
from aiohttp import web

from rationer.errors import DeadlineExceeded, Unavailable
from rationer.platform.clock import SYSTEM_CLOCK
from rationer.platform.net import free_port
from services.router.anthropic.door import MessagesDoor
from services.router.types import CompletionRequest, Message, RouteResult, StreamEvent

FAIL: dict[str, BaseException] = {
    "bug": RuntimeError("a bug"),
    "down": Unavailable("every tier is down"),
    "slow": DeadlineExceeded("deadline passed"),
}
HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


class FakeCore:
    clock = SYSTEM_CLOCK

    async def principal(self, key: str) -> None:
        return None

    async def complete(self, key: str, req: CompletionRequest, **kw: Any) -> tuple[str, RouteResult]:
        if req.model in FAIL:
            raise FAIL[req.model]
        return "hi", RouteResult(request_id=kw["request_id"], tier="t", model="m", prompt_tokens=3,
                                 completion_tokens=1)  # fmt: skip

    async def stream(self, key: str, req: CompletionRequest, **kw: Any) -> AsyncGenerator[StreamEvent, None]:
        if req.model in FAIL:
            raise FAIL[req.model]
        yield StreamEvent(delta="partial")
        if req.model.startswith("late-"):
            raise FAIL[req.model.removeprefix("late-")]
        yield StreamEvent(final=RouteResult(request_id=kw["request_id"], tier="t", model="m"))

    async def count_tokens(self, key: str, model: str, messages: tuple[Message, ...]) -> int:
        return 7


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    async def read_json(request: web.Request) -> Any:
        return await request.json()

    app = web.Application()
    door = MessagesDoor(cast(Any, FakeCore()), read_json, lambda r: time.monotonic() + 30, lambda r: "rid-1",
                        lambda r, resp: None)  # fmt: skip
    door.mount(app.router)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def post(base_url: str, model: str, *, stream: bool = False, path: str = "/v1/messages",
               key: str = "rk-1") -> httpx.Response:  # fmt: skip
    body = {"model": model, "max_tokens": 5, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(base_url=base_url) as http:
        return await http.post(path, json=body, headers=headers)


@pytest.mark.parametrize(("model", "status", "kind"), [
    ("bug", 500, "api_error"), ("down", 529, "overloaded_error"), ("slow", 504, "timeout_error"),
])  # fmt: skip
async def test_failures_before_the_answer_are_anthropic_errors(base_url: str, model: str, status: int,
                                                               kind: str) -> None:  # fmt: skip
    for stream in (False, True):
        resp = await post(base_url, model, stream=stream)
        assert resp.status_code == status and resp.headers["request-id"] == "rid-1"
        assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == kind


@pytest.mark.parametrize(("model", "kind"), [("bug", "api_error"), ("down", "overloaded_error")])
async def test_a_failure_after_the_first_token_is_an_error_event(base_url: str, model: str, kind: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        body = {"model": "ok", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        ok = await http.post("/v1/messages", json=body, headers=HEADERS)
    names = [line[7:] for line in ok.text.splitlines() if line.startswith("event: ")]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]  # fmt: skip
    resp = await post(base_url, f"late-{model}", stream=True)
    assert resp.status_code == 200
    events = [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: ")]
    assert events[-2]["delta"]["text"] == "partial"
    assert events[-1] == {"type": "error", "error": {"type": kind, "message": events[-1]["error"]["message"]}}


async def test_count_tokens_and_a_malformed_key(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        counted = await http.post("/v1/messages/count_tokens", headers=HEADERS,
                                  json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert counted.json() == {"input_tokens": 7}
    bad = await post(base_url, "ok", key="two words")
    assert bad.status_code == 401 and bad.json()["error"]["type"] == "authentication_error"
