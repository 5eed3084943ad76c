"""The Messages wire format as Anthropic's own SDK reads it.

A tiny aiohttp app answers with the door's writers (schema, response, errors,
version); the real ``anthropic`` package, sync and async, is the client. What
the SDK parses, accumulates and raises is what the door's callers will see.
The router core is not involved: the door's wiring is tested with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import pytest
from aiohttp import web
from anthropic.types import MessageParam

from rationer.errors import NotFound, RationerError, ResourceExhausted, Unauthenticated, Unavailable
from rationer.platform.net import free_port
from services.router.anthropic.errors import domain_response, stream_error
from services.router.anthropic.response import EventWriter, Usage, message_body
from services.router.anthropic.schema import parse_messages_request
from services.router.anthropic.version import check_version

KEY = "rk-test"
NOW = datetime(2030, 6, 15, 12, tzinfo=UTC)
ASK: list[MessageParam] = [{"role": "user", "content": "say hello world"}]
# Model name -> the domain error the app raises for it (before any text).
FAILURES: dict[str, RationerError] = {
    "limited": ResourceExhausted("rate limit hit", limit_id="rpm:team-a", retry_after_s=7),
    "budget": ResourceExhausted("budget spent", limit_id="budget:team-a", resets_at=NOW + timedelta(days=3)),
    "down": Unavailable("every tier is down"),
    "missing": NotFound("no model 'missing'; see /v1/models"),
}


class App:
    def __init__(self) -> None:
        self.hits: dict[str, int] = {}

    async def messages(self, request: web.Request) -> web.StreamResponse:
        try:
            # The SDKs send x-api-key (1.x) or a bearer token (2.x): the door takes either.
            if KEY not in (request.headers.get("x-api-key"), request.headers.get("authorization", "")[7:]):
                raise Unauthenticated("unknown API key")
            check_version(request.headers)
            call = parse_messages_request(await request.json())
            self.hits[call.model] = self.hits.get(call.model, 0) + 1
            if call.model in FAILURES:
                raise FAILURES[call.model]
        except RationerError as exc:
            return domain_response(exc, NOW, "req-1")
        words = ("echo: " + call.messages[-1].content).split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)][: call.params.max_tokens]
        finish = "length" if len(pieces) < len(words) else "stop"
        usage = Usage(input_tokens=len(call.messages[-1].content.split()), output_tokens=len(pieces))
        if not call.stream:
            body = message_body(request_id="r1", model=call.model, text="".join(pieces), finish_reason=finish,
                                usage=usage, meta={"tier": "local"})  # fmt: skip
            return web.json_response(body, headers={"request-id": "r1"})
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        writer = EventWriter(request_id="r1", model=call.model)
        # As the door does: the exact input count is known only at the end, in message_delta.
        await resp.write(writer.start())
        for i, piece in enumerate(pieces):
            if call.model == "breaks" and i == 2:
                await resp.write(stream_error(Unavailable("the tier died mid-answer"), NOW))
                return resp
            await resp.write(writer.delta(piece))
        await resp.write(writer.finish(finish, usage, meta={"tier": "local"}))
        return resp


@pytest.fixture
async def door() -> AsyncIterator[tuple[str, App]]:
    app = App()
    web_app = web.Application()
    web_app.router.add_post("/v1/messages", app.messages)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", app
    await runner.cleanup()


def sync_client(base: str, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base, api_key=kw.pop("api_key", KEY), **kw)


async def test_sync_create(door: tuple[str, App]) -> None:
    base, _ = door
    msg = await asyncio.to_thread(
        lambda: sync_client(base).messages.create(model="auto", max_tokens=64, messages=ASK, system="be brief")
    )
    assert msg.id == "msg_r1" and msg.role == "assistant" and msg.stop_reason == "end_turn"
    assert msg.content[0].type == "text" and msg.content[0].text == "echo: say hello world"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (3, 4)
    assert msg.usage.cache_read_input_tokens == 0


async def test_async_create_and_max_tokens(door: tuple[str, App]) -> None:
    base, _ = door
    client = anthropic.AsyncAnthropic(base_url=base, api_key=KEY)
    msg = await client.messages.create(model="auto", max_tokens=2, messages=ASK)
    await client.close()
    assert msg.content[0].type == "text" and msg.content[0].text == "echo: say"
    assert msg.stop_reason == "max_tokens"


async def test_async_streaming_accumulates_text_and_final_usage(door: tuple[str, App]) -> None:
    base, _ = door
    client = anthropic.AsyncAnthropic(base_url=base, api_key=KEY)
    kinds: list[str] = []
    async with client.messages.stream(model="auto", max_tokens=64, messages=ASK) as stream:
        async for event in stream:
            kinds.append(event.type)
        final = await stream.get_final_message()
    text = "".join(b.text for b in final.content if b.type == "text")
    await client.close()
    assert text == "echo: say hello world"
    assert final.stop_reason == "end_turn" and (final.usage.input_tokens, final.usage.output_tokens) == (3, 4)
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "content_block_delta" in kinds


async def test_sync_streaming_raw_events(door: tuple[str, App]) -> None:
    base, _ = door

    def run() -> list[str]:
        with sync_client(base).messages.create(model="auto", max_tokens=64, messages=ASK, stream=True) as events:
            return [e.type for e in events]

    kinds = await asyncio.to_thread(run)
    # The SDK drops ping itself; everything else arrives in the published order.
    assert kinds == ["message_start", "content_block_start", *["content_block_delta"] * 4,
                     "content_block_stop", "message_delta", "message_stop"]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "cls", "kind"),
    [("down", anthropic.OverloadedError, "overloaded_error"), ("missing", anthropic.NotFoundError, "not_found_error")],
)
async def test_errors_raise_the_sdks_classes(door: tuple[str, App], model: str, cls: type, kind: str) -> None:
    base, _ = door
    client = anthropic.AsyncAnthropic(base_url=base, api_key=KEY, max_retries=0)
    with pytest.raises(cls) as info:
        await client.messages.create(model=model, max_tokens=8, messages=ASK)
    await client.close()
    assert isinstance(info.value, anthropic.APIStatusError)
    assert info.value.body["error"]["type"] == kind  # type: ignore[index]
    assert info.value.request_id == "req-1"


async def test_bad_key_bad_version_and_bad_body(door: tuple[str, App]) -> None:
    base, _ = door
    with pytest.raises(anthropic.AuthenticationError):
        await asyncio.to_thread(lambda: sync_client(base, api_key="nope").messages.create(
            model="auto", max_tokens=8, messages=ASK))  # fmt: skip
    old = sync_client(base, default_headers={"anthropic-version": "2022-01-01"})
    with pytest.raises(anthropic.BadRequestError, match="anthropic-version"):
        await asyncio.to_thread(lambda: old.messages.create(model="auto", max_tokens=8, messages=ASK))
    client = anthropic.AsyncAnthropic(base_url=base, api_key=KEY)
    with pytest.raises(anthropic.BadRequestError, match="image blocks are not supported") as info:
        await client.messages.create(model="auto", max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}])  # fmt: skip
    await client.close()
    assert info.value.status_code == 400 and info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


async def test_429_retry_after_reaches_the_sdk(door: tuple[str, App]) -> None:
    base, app = door
    client = anthropic.AsyncAnthropic(base_url=base, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as info:
        await client.messages.create(model="limited", max_tokens=8, messages=ASK)
    assert info.value.response.headers["retry-after"] == "7"
    assert "rpm:team-a" in info.value.message
    # A budget that resets in days: the SDK is told not to retry, and obeys.
    patient = anthropic.AsyncAnthropic(base_url=base, api_key=KEY, max_retries=3)
    with pytest.raises(anthropic.RateLimitError) as budget:
        await patient.messages.create(model="budget", max_tokens=8, messages=ASK)
    await client.close()
    await patient.close()
    assert budget.value.response.headers["x-should-retry"] == "false"
    assert app.hits["budget"] == 1


async def test_error_event_mid_stream(door: tuple[str, App]) -> None:
    base, _ = door
    client = anthropic.AsyncAnthropic(base_url=base, api_key=KEY)
    texts: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        async with client.messages.stream(model="breaks", max_tokens=64, messages=ASK) as stream:
            async for text in stream.text_stream:
                texts.append(text)
    await client.close()
    assert texts == ["echo:", " say"]
    assert info.value.body["error"] == {"type": "overloaded_error", "message": "the tier died mid-answer"}  # type: ignore[index]
