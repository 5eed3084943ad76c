"""The OpenAI-compatible front door with the official ``openai`` client.

One stack per module (ledger, cache, router with gRPC + HTTP) in front of a
real OpenAI-compatible upstream (llama_cpp.server + SmolLM2). Every answer's
usage and cost are checked against what the ledger recorded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import numpy as np
import openai
import pytest
from logcheck import sensitive
from openai._legacy_response import LegacyAPIResponse
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from stack import Stack, running_stack

from rationer.api.ledger.v1 import ledger_pb2

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello in three words."}]
sensitive("Say hello in three words.", "Name the capital of France in one word.")  # never in a log (tests/logcheck.py)


@pytest.fixture(scope="module")
async def stack(frontier_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(
        tmp_path_factory.mktemp("http-chat"), frontier_base_url=frontier_base_url, worker=True
    ) as s:
        yield s


def client(stack: Stack, key: str = "") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{stack.http_base_url}/v1", api_key=key or stack.api_key, max_retries=0)


def nano(usd: str) -> int:
    return int(Decimal(usd) * 1_000_000_000)


async def charge_event(stack: Stack, request_id: str) -> ledger_pb2.UsageEvent:
    """The ledger's charge for a request (commits are awaited before responding)."""
    events = await stack.ledger.admin.list_events(kind="charge")
    found = [e for e in events if e.request_id.split(":")[0] == request_id]
    assert len(found) == 1, f"expected one charge for {request_id}, got {len(found)}"
    return found[0]


async def test_sync_client_chat_is_billed_as_reported(stack: Stack) -> None:
    def call() -> LegacyAPIResponse[ChatCompletion]:
        with openai.OpenAI(base_url=f"{stack.http_base_url}/v1", api_key=stack.api_key, max_retries=0) as c:
            return c.chat.completions.with_raw_response.create(
                model="auto", messages=HELLO, max_tokens=4, temperature=0, seed=7, user="alice",
                extra_headers={"Cache-Control": "no-cache"},
            )  # fmt: skip

    # The sync client blocks: run it off the loop that serves the stack.
    raw = await asyncio.to_thread(call)
    resp = raw.parse()
    h = raw.headers
    assert resp.object == "chat.completion" and resp.id == f"chatcmpl-{h['x-request-id']}"
    assert resp.choices[0].message.role == "assistant" and resp.choices[0].message.content
    assert resp.choices[0].finish_reason in ("stop", "length")
    # (llama.cpp may run past max_tokens to finish a multi-byte character, so
    # the count is only checked against the ledger, not against max_tokens.)
    assert resp.usage is not None and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert h["x-rationer-tier"] in ("local-small", "frontier-mini", "frontier") and h["x-rationer-cache"] == "miss"
    assert resp.model == h["x-rationer-model"]
    event = await charge_event(stack, h["x-request-id"])
    assert event.cost.nano_usd == nano(h["x-rationer-cost-usd"]) > 0
    assert event.counterfactual_cost.nano_usd - event.cost.nano_usd == nano(h["x-rationer-savings-usd"])
    assert (event.prompt_tokens, event.completion_tokens) == (resp.usage.prompt_tokens, resp.usage.completion_tokens)
    assert event.tier == h["x-rationer-tier"]


async def test_async_client_explicit_tier_model_and_project(stack: Stack) -> None:
    async with client(stack) as c:
        by_tier = await c.chat.completions.with_raw_response.create(
            model="frontier", messages=HELLO, max_completion_tokens=3, top_p=0.9, stop=["\n\n"],
            extra_body={"no_cache": True}, extra_headers={"X-Rationer-Project": "apollo"},
        )  # fmt: skip
        by_model = await c.chat.completions.with_raw_response.create(
            model="smollm2-mini", messages=HELLO, max_tokens=3, extra_body={"no_cache": True}
        )
    assert by_tier.headers["x-rationer-tier"] == "frontier"
    assert by_tier.parse().model == "smollm2-frontier"
    assert by_model.headers["x-rationer-tier"] == "frontier-mini"
    event = await charge_event(stack, by_tier.headers["x-request-id"])
    assert event.project == "apollo"
    assert event.cost.nano_usd == nano(by_tier.headers["x-rationer-cost-usd"])
    assert event.completion_tokens == by_tier.parse().usage.completion_tokens  # type: ignore[union-attr]


async def test_streaming_chat_usage_matches_ledger(stack: Stack) -> None:
    async with client(stack) as c:
        stream = await c.chat.completions.create(
            model="frontier", messages=HELLO, max_tokens=5, stream=True,
            stream_options={"include_usage": True}, extra_body={"no_cache": True},
        )  # fmt: skip
        chunks = [chunk async for chunk in stream]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finals) == 1
    meta = finals[0].model_extra["rationer"]  # type: ignore[index]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert meta["tier"] == "frontier" and meta["cache"] == "miss"
    event = await charge_event(stack, meta["request_id"])
    assert event.cost.nano_usd == meta["cost_nano_usd"] == nano(meta["cost_usd"]) > 0
    # Whatever the upstream reported (or, without usage, the hold's maximum),
    # the client sees exactly what the ledger billed.
    assert (event.prompt_tokens, event.completion_tokens) == (
        usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens)  # fmt: skip
    assert all(ch.id == f"chatcmpl-{meta['request_id']}" for ch in chunks)


async def test_local_worker_tier_streams_and_bills_exactly(stack: Stack) -> None:
    async with client(stack) as c:
        stream = await c.chat.completions.create(
            model="local-small", messages=HELLO, max_tokens=4, stream=True,
            stream_options={"include_usage": True}, extra_body={"no_cache": True},
        )  # fmt: skip
        chunks = [chunk async for chunk in stream]
    meta = next(ch for ch in chunks if ch.choices and ch.choices[0].finish_reason).model_extra["rationer"]  # type: ignore[index]
    usage = chunks[-1].usage
    assert meta["tier"] == "local-small" and usage is not None
    event = await charge_event(stack, meta["request_id"])
    assert event.cost.nano_usd == meta["cost_nano_usd"] > 0
    assert (event.prompt_tokens, event.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)


async def test_sse_framing_without_usage(stack: Stack) -> None:
    body = {"model": "frontier-mini", "messages": HELLO, "max_tokens": 3, "stream": True, "no_cache": True}
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=60) as http:
        resp = await http.post("/v1/chat/completions", json=body,
                               headers={"Authorization": f"Bearer {stack.api_key}"})  # fmt: skip
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["x-request-id"]
    events = [block for block in resp.text.split("\n\n") if block]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(e[6:]) for e in events[:-1]]
    assert all(p["object"] == "chat.completion.chunk" and "usage" not in p for p in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert payloads[-1]["rationer"]["request_id"] == resp.headers["x-request-id"]


async def test_repeat_is_a_cache_hit_at_zero_cost(stack: Stack) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Name the capital of France in one word."}
    ]
    async with client(stack) as c:
        first = await c.chat.completions.with_raw_response.create(
            model="auto", messages=messages, max_tokens=4, temperature=0
        )
        assert first.headers["x-rationer-cache"] == "miss"
        hit = None
        for _ in range(50):  # the store is written off the response path
            again = await c.chat.completions.with_raw_response.create(
                model="auto", messages=messages, max_tokens=4, temperature=0
            )
            if again.headers["x-rationer-cache"] == "hit":
                hit = again
                break
            await asyncio.sleep(0.1)
    assert hit is not None, "the second identical request never hit the cache"
    assert hit.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert nano(hit.headers["x-rationer-cost-usd"]) == 0 < nano(hit.headers["x-rationer-savings-usd"])


async def test_models_lists_only_the_keys_tiers(stack: Stack) -> None:
    limited = await stack.new_key(org="models-org", allowed_tiers=["frontier-mini"])
    async with client(stack) as full, client(stack, limited.secret) as small:
        everything = {m.id async for m in full.models.list()}
        mine = {m.id async for m in small.models.list()}
        assert (await small.models.retrieve("frontier-mini")).id == "frontier-mini"
        with pytest.raises(openai.NotFoundError):
            await small.models.retrieve("frontier")
        # Ids with a slash ("org/model") reach the handler, not the 404 for unknown paths.
        with pytest.raises(openai.NotFoundError) as slash:
            await small.models.retrieve("acme/no-such-model")
        assert slash.value.code == "model_not_found"
    assert everything == {
        "auto", "local-small", "smollm2-135m-instruct", "frontier-mini", "smollm2-mini", "frontier", "smollm2-frontier"
    }  # fmt: skip
    assert mine == {"auto", "frontier-mini", "smollm2-mini"}


async def test_embeddings_use_the_shared_embedder(stack: Stack) -> None:
    texts = ["How do I reset my password?", "I forgot my password, how can I change it?", "Best pizza in Rome"]
    async with client(stack) as c:
        b64 = await c.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # SDK default: base64
        floats = await c.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="float")
    vecs = np.array([d.embedding for d in b64.data], dtype=np.float32)
    assert vecs.shape == (3, 384) and [d.index for d in b64.data] == [0, 1, 2]
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(vecs[0], stack.core.embedder.embed_one(texts[0]), atol=1e-5)
    np.testing.assert_allclose(np.array(floats.data[0].embedding), vecs[0], atol=1e-6)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2]
    assert b64.usage.prompt_tokens > 0 and b64.usage.total_tokens == b64.usage.prompt_tokens


async def test_health_readiness_and_metrics(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.http_base_url) as http:
        assert (await http.get("/health")).json() == {"status": "ok"}
        ready = await http.get("/ready")
        metrics = await http.get("/metrics")
    assert ready.status_code == 200
    assert set(ready.json()["healthy_tiers"]) == {"local-small", "frontier-mini", "frontier"}
    assert metrics.status_code == 200
    assert 'rationer_http_requests_total{method="POST",route="/v1/chat/completions",status="200"}' in metrics.text
