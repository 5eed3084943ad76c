"""``top_k`` reaches the sampler: through the Messages door and the gRPC SDK to a real worker.

With ``top_k = 1`` only the likeliest token can be drawn, so a sampled answer
(temperature 1, any seed) must equal the greedy one; that can only hold if
the value got from the door through the router to llama.cpp's sampler chain.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from stack import Stack, running_stack

from rationer import AsyncClient
from services.router.anthropic.upstream import payload
from services.router.types import GenParams, Message

PROMPT = "Name three colours of the rainbow."
HEADERS = {"anthropic-version": "2023-06-01", "Cache-Control": "no-cache"}


@pytest.fixture(scope="module")
async def stack(frontier_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path_factory.mktemp("top-k"), frontier_base_url=frontier_base_url,
                             worker=True) as s:  # fmt: skip
        yield s


async def messages(stack: Stack, **extra: Any) -> httpx.Response:
    body = {"model": "local-small", "max_tokens": 16, "messages": [{"role": "user", "content": PROMPT}], **extra}
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=120) as http:
        return await http.post("/v1/messages", content=json.dumps(body).encode(),
                               headers={"x-api-key": stack.api_key, **HEADERS})  # fmt: skip


def text(resp: httpx.Response) -> str:
    assert resp.status_code == 200, resp.text
    return "".join(b["text"] for b in resp.json()["content"])


async def test_top_k_1_makes_the_messages_door_sample_greedily(stack: Stack) -> None:
    greedy = text(await messages(stack, temperature=0))
    for seed_hint in ("a", "b"):  # different metadata, same greedy answer
        sampled = await messages(stack, temperature=1, top_k=1, metadata={"user_id": seed_hint})
        assert text(sampled) == greedy


async def test_top_k_1_through_the_grpc_sdk(stack: Stack) -> None:
    async with AsyncClient(stack.router_address, api_key=stack.api_key) as c:
        greedy = await c.complete(PROMPT, model="local-small", max_tokens=16, temperature=0, no_cache=True)
        for seed in (1, 2, 3):
            sampled = await c.complete(PROMPT, model="local-small", max_tokens=16, temperature=1.0, top_k=1,
                                       seed=seed, no_cache=True)  # fmt: skip
            assert sampled.text == greedy.text


async def test_a_top_k_out_of_range_is_400_naming_it(stack: Stack) -> None:
    for bad in (0, 5000):
        resp = await messages(stack, top_k=bad)
        assert resp.status_code == 400, resp.text
        err = resp.json()["error"]
        assert err["type"] == "invalid_request_error" and "top_k" in err["message"], err


def test_an_anthropic_upstream_receives_top_k() -> None:
    body = payload("claude-x", [Message("user", "hi")], GenParams(max_tokens=8, top_k=7), stream=False)
    assert body["top_k"] == 7
    assert "top_k" not in payload("claude-x", [Message("user", "hi")], GenParams(max_tokens=8), stream=False)
