"""The Anthropic upstream client against a local server speaking the Messages wire format.

The server (anthropic_wire.py) implements the published specification on its
own, so these tests check the client's requests against the spec's rules and
its reading of the spec's responses, streams, errors and cache usage.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from anthropic_wire import Fault, WireServer, anthropic_wire_server

from rationer.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.router.anthropic.upstream import AnthropicClient, AnthropicConfig, CachedCompletion, CachedDelta
from services.router.backends import FrontierBackend
from services.router.types import Delta, GenParams, Message

KEY = "sk-ant-wire"
MODEL = "claude-wire"
CONVO = (Message("system", "be brief"), Message("user", "hello there"),
         Message("assistant", "hi"), Message("user", "say three words"))  # fmt: skip
PARAMS = GenParams(max_tokens=50, temperature=0.5, top_p=0.9, seed=7)


@pytest.fixture
async def wire() -> AsyncIterator[WireServer]:
    async with anthropic_wire_server(KEY, (MODEL,)) as server:
        yield server


def client(server: WireServer, **kw: object) -> AnthropicClient:
    options: dict[str, object] = {"max_retries": 2, "backoff_base_s": 0.001, **kw}
    return AnthropicClient(AnthropicConfig(base_url=server.base_url, model=MODEL, api_key=KEY, **options))  # type: ignore[arg-type]


async def collect(c: AnthropicClient, messages: tuple[Message, ...] = CONVO, params: GenParams = PARAMS,
                  deadline: float | None = None) -> tuple[list[Delta], CachedDelta]:  # fmt: skip
    deltas = [d async for d in c.stream(messages, params, deadline)]
    final = deltas[-1]
    assert isinstance(final, CachedDelta) and final.final
    return deltas[:-1], final


async def test_complete_sends_a_spec_request_and_reads_exact_usage(wire: WireServer) -> None:
    c = client(wire)
    out = await c.complete(CONVO, GenParams(max_tokens=50, temperature=1.7, stop=("END",), seed=3), top_k=5)
    await c.aclose()
    seen = wire.requests[-1]
    assert seen.headers["x-api-key"] == KEY and seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.body["system"] == "be brief"
    assert [m["role"] for m in seen.body["messages"]] == ["user", "assistant", "user"]
    # OpenAI-only fields never reach Anthropic (the server refuses extras); 0..2 temperatures are capped at 1.
    assert "seed" not in seen.body and seen.body["temperature"] == 1.0
    assert seen.body["stop_sequences"] == ["END"] and seen.body["top_k"] == 5
    assert isinstance(out, CachedCompletion)
    assert out.text == "echo: say three words" and out.finish_reason == "stop"
    # Prompt words: "be brief" + "hello there" + "hi" + "say three words".
    assert (out.prompt_tokens, out.completion_tokens, out.usage_exact) == (8, 4, True)
    assert out.model == MODEL


async def test_stream_yields_the_same_text_and_exact_usage_from_message_delta(wire: WireServer) -> None:
    c = client(wire)
    whole = await c.complete(CONVO, PARAMS)
    deltas, final = await collect(c)
    await c.aclose()
    assert "".join(d.text for d in deltas) == whole.text
    assert all(not d.usage_exact for d in deltas)
    assert (final.prompt_tokens, final.completion_tokens, final.finish_reason) == (8, 4, "stop")
    assert final.usage_exact and wire.requests[-1].body["stream"] is True


async def test_max_tokens_maps_to_length(wire: WireServer) -> None:
    c = client(wire)
    out = await c.complete(CONVO, GenParams(max_tokens=2))
    _, final = await collect(c, params=GenParams(max_tokens=2))
    await c.aclose()
    assert (out.text, out.finish_reason, out.completion_tokens) == ("echo: say", "length", 2)
    assert (final.finish_reason, final.completion_tokens) == ("length", 2)


async def test_cached_system_prompt_reports_creation_then_reads(wire: WireServer) -> None:
    c = client(wire, cache_system=True)
    first = await c.complete(CONVO, PARAMS)
    _, second = await collect(c)
    await c.aclose()
    assert wire.requests[-1].body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert (first.cache_creation_tokens, first.cache_read_tokens) == (2, 0)
    assert (second.cache_creation_tokens, second.cache_read_tokens) == (0, 2)
    # prompt_tokens stays the whole prompt, cached or not.
    assert first.prompt_tokens == second.prompt_tokens == 8


async def test_overloaded_529_is_retried(wire: WireServer) -> None:
    wire.faults[:] = [Fault(error="overloaded_error"), Fault(error="api_error")]
    c = client(wire)
    out = await c.complete(CONVO, PARAMS)
    wire.faults[:] = [Fault(error="overloaded_error")]
    _, final = await collect(c)
    await c.aclose()
    assert out.text == "echo: say three words" and final.usage_exact
    assert len(wire.requests) == 5


async def test_retries_exhausted_raise_unavailable(wire: WireServer) -> None:
    wire.faults[:] = [Fault(error="overloaded_error")] * 3
    c = client(wire)
    with pytest.raises(Unavailable, match="529"):
        await c.complete(CONVO, PARAMS)
    await c.aclose()
    assert len(wire.requests) == 3


async def test_429_waits_out_a_short_retry_after_but_hands_back_a_long_one(wire: WireServer) -> None:
    c = client(wire)
    wire.faults[:] = [Fault(error="rate_limit_error", retry_after="0")]
    assert (await c.complete(CONVO, PARAMS)).usage_exact
    wire.faults[:] = [Fault(error="rate_limit_error", retry_after="30")]
    with pytest.raises(ResourceExhausted) as info:
        await c.complete(CONVO, PARAMS)
    await c.aclose()
    assert info.value.retry_after_s == 30.0 and info.value.limit_id == "frontier"
    assert len(wire.requests) == 3


async def test_x_should_retry_overrides_the_status_rules(wire: WireServer) -> None:
    c = client(wire)
    wire.faults[:] = [Fault(error="api_error", should_retry="false")]
    with pytest.raises(Unavailable):
        await c.complete(CONVO, PARAMS)
    assert len(wire.requests) == 1
    wire.faults[:] = [Fault(error="invalid_request_error", should_retry="true")]
    assert (await c.complete(CONVO, PARAMS)).text
    await c.aclose()
    assert len(wire.requests) == 3


async def test_client_errors_are_not_retried_and_carry_the_providers_message(wire: WireServer) -> None:
    c = client(wire)
    with pytest.raises(InvalidArgument, match="messages: at least one message"):
        await c.complete((Message("system", "only a system prompt"),), PARAMS)
    await c.aclose()
    bad = AnthropicClient(AnthropicConfig(base_url=wire.base_url, model=MODEL, api_key="wrong"))
    with pytest.raises(Unauthenticated, match="invalid x-api-key"):
        await bad.complete(CONVO, PARAMS)
    await bad.aclose()
    assert len(wire.requests) == 2


async def test_unknown_model_is_an_unavailable_tier_not_the_callers_404(wire: WireServer) -> None:
    c = AnthropicClient(AnthropicConfig(base_url=wire.base_url, model="claude-missing", api_key=KEY))
    with pytest.raises(Unavailable, match="404") as info:
        await c.complete(CONVO, PARAMS)
    await c.aclose()
    assert not isinstance(info.value, NotFound)


async def test_error_event_before_text_is_retried(wire: WireServer) -> None:
    wire.faults[:] = [Fault(midstream="overloaded_error", after=0)]
    c = client(wire)
    deltas, final = await collect(c)
    await c.aclose()
    assert "".join(d.text for d in deltas) == "echo: say three words" and final.usage_exact
    assert len(wire.requests) == 2


async def test_error_event_after_text_is_raised_not_spliced(wire: WireServer) -> None:
    wire.faults[:] = [Fault(midstream="overloaded_error", after=2)]
    c = client(wire)
    got: list[str] = []
    with pytest.raises(Unavailable, match="overloaded_error"):
        async for d in c.stream(CONVO, PARAMS):
            got.append(d.text)
    await c.aclose()
    assert "".join(got) == "echo: say" and len(wire.requests) == 1


async def test_connection_cut_mid_answer_is_unavailable_without_retry(wire: WireServer) -> None:
    wire.faults[:] = [Fault(drop_after=1)]
    c = client(wire)
    got: list[str] = []
    with pytest.raises(Unavailable):
        async for d in c.stream(CONVO, PARAMS):
            got.append(d.text)
    await c.aclose()
    assert got == ["echo:"] and len(wire.requests) == 1


async def test_undecodable_event_is_unavailable(wire: WireServer) -> None:
    wire.faults[:] = [Fault(garbage_after=1)]
    c = client(wire)
    with pytest.raises(Unavailable, match="not JSON"):
        await collect(c)
    await c.aclose()


async def test_missing_usage_is_flagged_not_billed_as_zero(wire: WireServer) -> None:
    wire.faults[:] = [Fault(no_usage=True), Fault(no_usage=True)]
    c = client(wire)
    out = await c.complete(CONVO, PARAMS)
    _, final = await collect(c)
    await c.aclose()
    assert not out.usage_exact and not final.usage_exact
    assert out.text == "echo: say three words"


async def test_a_stalled_upstream_stops_at_the_callers_deadline(wire: WireServer) -> None:
    wire.faults[:] = [Fault(stall_s=5.0), Fault(stall_s=5.0)]
    c = client(wire)
    with pytest.raises(DeadlineExceeded):
        await c.complete(CONVO, PARAMS, deadline=time.monotonic() + 0.2)
    with pytest.raises(DeadlineExceeded):
        await collect(c, deadline=time.monotonic() + 0.2)
    await c.aclose()


async def test_unreachable_endpoint_is_unavailable(wire: WireServer) -> None:
    from rationer.platform.net import free_port

    c = AnthropicClient(AnthropicConfig(base_url=f"http://127.0.0.1:{free_port()}", model=MODEL,
                                        max_retries=1, backoff_base_s=0.001))  # fmt: skip
    with pytest.raises(Unavailable, match="unreachable"):
        await c.complete(CONVO, PARAMS)
    with pytest.raises(Unavailable, match="unreachable"):
        await collect(c)
    await c.aclose()


async def test_the_frontier_circuit_breaker_trips_on_an_anthropic_tier(wire: WireServer) -> None:
    wire.faults[:] = [Fault(error="overloaded_error")] * 3
    backend = FrontierBackend(client(wire, max_retries=0), trip_after=3, cooldown_s=60.0)  # type: ignore[arg-type]
    for _ in range(3):
        with pytest.raises(Unavailable):
            await backend.complete(MODEL, CONVO, PARAMS, None)
    assert not backend.healthy(MODEL)
    await backend.client.aclose()
