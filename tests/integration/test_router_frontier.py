"""The frontier client against a real OpenAI-compatible server on loopback."""

from __future__ import annotations

import time

import httpx
import pytest

from rationer.errors import DeadlineExceeded, NotFound, Unavailable
from rationer.platform.net import free_port
from services.router.backends.frontier import FrontierClient, FrontierConfig
from services.router.types import GenParams, Message

MSGS = [Message("user", "Say hello in three words.")]


async def test_complete_reports_exact_usage(frontier_base_url: str) -> None:
    client = FrontierClient(FrontierConfig(base_url=frontier_base_url, model="frontier-sim"))
    try:
        out = await client.complete(MSGS, GenParams(max_tokens=6, temperature=0.0, seed=1))
    finally:
        await client.aclose()
    assert out.completion_tokens == 6 or out.finish_reason == "stop"
    assert 0 < out.completion_tokens <= 6
    assert out.prompt_tokens > 5
    assert out.text


async def test_stream_yields_deltas_then_final(frontier_base_url: str) -> None:
    client = FrontierClient(FrontierConfig(base_url=frontier_base_url, model="frontier-sim"))
    try:
        deltas = [d async for d in client.stream(MSGS, GenParams(max_tokens=5, temperature=0.0))]
    finally:
        await client.aclose()
    assert deltas[-1].final
    assert "".join(d.text for d in deltas[:-1])
    # llama_cpp.server 0.3.x ignores stream_options.include_usage: the client
    # must say so instead of reporting zero tokens.
    final = deltas[-1]
    assert final.usage_exact is (final.completion_tokens > 0)


async def test_unreachable_endpoint_is_unavailable_after_retries() -> None:
    port = free_port()
    client = FrontierClient(
        FrontierConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=2, backoff_base_s=0.01)
    )
    try:
        with pytest.raises(Unavailable, match="unreachable"):
            await client.complete(MSGS, GenParams(max_tokens=4))
    finally:
        await client.aclose()


async def test_deadline_already_passed() -> None:
    client = FrontierClient(FrontierConfig(base_url="http://127.0.0.1:9/v1", model="m"))
    try:
        with pytest.raises(DeadlineExceeded):
            await client.complete(MSGS, GenParams(max_tokens=4), deadline=time.monotonic() - 1)
    finally:
        await client.aclose()


async def test_non_retryable_status_is_mapped(frontier_base_url: str) -> None:
    # A 404 from the upstream (wrong path) is not retried and is not a 200.
    http = httpx.AsyncClient(base_url=frontier_base_url + "/nope")
    client = FrontierClient(FrontierConfig(base_url=frontier_base_url, model="m"), http=http)
    try:
        with pytest.raises((Unavailable, NotFound)):
            await client.complete(MSGS, GenParams(max_tokens=4))
    finally:
        await client.aclose()
