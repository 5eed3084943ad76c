"""The door applies the ledger's rules to every answer: cache hits, embeddings, projects, request ids.

One stack per module (ledger, cache, router with gRPC + HTTP, frontier tiers
on a real OpenAI-compatible upstream). Each test uses its own org.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict
from decimal import Decimal
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from stack import Stack, running_stack

from rationer.errors import Unavailable
from services.ledger.calls import CacheHitCall
from services.ledger.client import LedgerClient
from testsupport.ledger import ADMIN_TOKEN, make_key
from testsupport.ledger import TestKey as LedgerKey


@pytest.fixture(scope="module")
async def stack(frontier_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path_factory.mktemp("http-ledger-rules"), frontier_base_url=frontier_base_url) as s:
        yield s


def client(stack: Stack, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{stack.http_base_url}/v1", api_key=key, max_retries=0)


def ask(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


async def chat(stack: Stack, key: str, messages: list[ChatCompletionMessageParam], **headers: str) -> Any:
    async with client(stack, key) as c:
        return await c.chat.completions.with_raw_response.create(
            model="frontier-mini", messages=messages, max_tokens=3, temperature=0, extra_headers=headers
        )


async def warm(stack: Stack, org: str, messages: list[ChatCompletionMessageParam]) -> LedgerKey:
    """Put an answer in ``org``'s cache with an unlimited key of that org; returns the key."""
    warmer = await make_key(stack.ledger.admin, org=org, team="t", email=f"warm@{org}.test")
    for _ in range(100):  # the store is written off the response path
        resp = await chat(stack, warmer.secret, messages)
        if resp.headers["x-rationer-cache"] == "hit":
            return warmer
        await asyncio.sleep(0.05)
    raise AssertionError("the answer never reached the cache")


async def events(stack: Stack, key_id: str, kind: str) -> list[Any]:
    return [e for e in await stack.ledger.admin.list_events(kind=kind) if e.key_id == key_id]


async def test_cache_hits_and_embeddings_use_up_the_rate_limit(stack: Stack) -> None:
    messages = ask("Name the largest planet in one word.")
    await warm(stack, "rl-org", messages)
    k = await make_key(stack.ledger.admin, org="rl-org", team="t", email="limited@rl-org.test")
    await stack.ledger.admin.set_rate_limit("key", k.key_id, rpm=3)
    for _ in range(3):
        hit = await chat(stack, k.secret, messages)
        assert hit.headers["x-rationer-cache"] == "hit"
    with pytest.raises(openai.RateLimitError) as denied:
        await chat(stack, k.secret, messages)
    assert denied.value.response.headers["x-rationer-limit"] == f"rpm:key:{k.key_id}"
    assert int(denied.value.response.headers["retry-after"]) >= 1
    async with client(stack, k.secret) as c:
        with pytest.raises(openai.RateLimitError):
            await c.embeddings.create(model="all-MiniLM-L6-v2", input=["a"] * 256)
    assert len(await events(stack, k.key_id, "cache_hit")) == 3  # one per answer served, no more
    assert await events(stack, k.key_id, "embedding") == []  # denied before any compute


async def test_embeddings_are_priced_counted_and_in_the_chargeback(stack: Stack) -> None:
    k = await make_key(stack.ledger.admin, org="emb-org", team="t", email="e@emb-org.test")
    await stack.ledger.admin.set_rate_limit("key", k.key_id, rpm=3)
    async with client(stack, k.secret) as c:
        raws = [await c.embeddings.with_raw_response.create(model="all-MiniLM-L6-v2", input=["how do I reset it?"] * n)
                for n in (1, 16, 256)]  # fmt: skip
        with pytest.raises(openai.RateLimitError):
            await c.embeddings.create(model="all-MiniLM-L6-v2", input="one more")
    charged = await events(stack, k.key_id, "embedding")
    assert len(charged) == 3
    by_request = {e.request_id: e for e in charged}
    for raw in raws:
        ev = by_request[raw.headers["x-request-id"]]
        assert ev.prompt_tokens == raw.parse().usage.prompt_tokens and ev.tier == "embeddings"
        assert ev.cost.nano_usd == int(Decimal(raw.headers["x-rationer-cost-usd"]) * 10**9) > 0
    async with LedgerClient(stack.ledger_address, bearer=ADMIN_TOKEN) as reader:
        rows = await reader.usage(scope=("org", "emb-org"), group_by=["tier"])
    (row,) = rows
    assert (row.group["tier"], row.requests, row.cost) == ("embeddings", 3, sum(e.cost.nano_usd for e in charged))


async def test_three_cache_hits_with_one_request_id_are_one_answer_and_two_409s(stack: Stack) -> None:
    messages = ask("Name the smallest planet in one word.")
    warmer = await warm(stack, "rid-org", messages)
    first = await chat(stack, warmer.secret, messages, **{"x-request-id": "same-id-1"})
    assert first.headers["x-rationer-cache"] == "hit"
    for _ in range(2):
        with pytest.raises(openai.ConflictError, match="already used"):
            await chat(stack, warmer.secret, messages, **{"x-request-id": "same-id-1"})
    hits = [e for e in await events(stack, warmer.key_id, "cache_hit") if e.request_id == "same-id-1"]
    assert len(hits) == 1
    # Another org's key may use the same id: ids are scoped to the key.
    other = await warm(stack, "rid-org-2", messages)
    again = await chat(stack, other.secret, messages, **{"x-request-id": "same-id-1"})
    assert again.headers["x-request-id"] == "same-id-1"


async def test_a_key_bound_to_a_project_cannot_leave_its_budget(stack: Stack) -> None:
    admin = stack.ledger.admin
    bound = await make_key(admin, org="proj-org", team="t", email="p@proj-org.test", project="web")
    await admin.set_budget("project", "proj-org/web", unit="usd", period="lifetime", hard_limit=1)
    messages = ask("Say one word.")
    for headers in ({}, {"x-rationer-project": "web"}):
        with pytest.raises(openai.RateLimitError) as denied:
            await chat(stack, bound.secret, messages, **headers)
        assert denied.value.response.headers["x-rationer-limit"] == "budget:project:proj-org/web:usd:lifetime"
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await chat(stack, bound.secret, messages, **{"x-rationer-project": "mobile"})
    assert refused.value.code == "project_not_allowed" and "bound to project 'web'" in refused.value.message
    async with client(stack, bound.secret) as c:
        with pytest.raises(openai.RateLimitError):
            await c.embeddings.create(model="all-MiniLM-L6-v2", input="hello")
        with pytest.raises(openai.PermissionDeniedError):
            await c.embeddings.create(model="all-MiniLM-L6-v2", input="hello",
                                      extra_headers={"x-rationer-project": "mobile"})  # fmt: skip
    # An unbound key: the header is honoured when given (and only then).
    free = await make_key(admin, org="proj-org", team="t", email="free@proj-org.test")
    with pytest.raises(openai.RateLimitError):
        await chat(stack, free.secret, messages, **{"x-rationer-project": "web"})
    ok = await chat(stack, free.secret, messages)
    assert ok.status_code == 200


async def test_a_cache_hit_the_ledger_cannot_record_yet_is_served_and_recorded_later(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = ask("Name the red planet in one word.")
    k = await warm(stack, "outage-org", messages)
    real = stack.core.ledger.record_cache_hit
    calls: list[dict[str, Any]] = []

    async def flaky(call: CacheHitCall) -> Any:  # the ledger is away for the inline attempts
        calls.append(asdict(call))
        if len(calls) <= 6:
            raise Unavailable("ledger: connection refused")
        return await real(call)

    monkeypatch.setattr(stack.core.ledger, "record_cache_hit", flaky)
    served = await chat(stack, k.secret, messages, **{"x-request-id": "during-outage"})
    assert served.headers["x-rationer-cache"] == "hit" and served.headers["x-rationer-settlement"] == "pending"
    for _ in range(100):
        landed = [e for e in await events(stack, k.key_id, "cache_hit") if e.request_id == "during-outage"]
        if landed:
            break
        await asyncio.sleep(0.1)
    assert len(landed) == 1 and "recorded after it was served" in landed[0].detail
    assert calls[-1]["served"] and len({c["record_id"] for c in calls}) == 1


async def test_two_orgs_may_use_the_same_request_id(stack: Stack) -> None:
    a = await make_key(stack.ledger.admin, org="ida-org", team="t", email="a@ida-org.test")
    b = await make_key(stack.ledger.admin, org="idb-org", team="t", email="b@idb-org.test")
    answers = []
    for k in (a, b, b):  # B asks with the id A used, then with one nobody used
        rid = "predictable-7" if len(answers) < 2 else "unused-8"
        async with client(stack, k.secret) as c:
            raw = await c.chat.completions.with_raw_response.create(
                model="frontier-mini", messages=ask("Say hi."), max_tokens=2, extra_body={"no_cache": True},
                extra_headers={"x-request-id": rid},
            )  # fmt: skip
        answers.append(raw)
    # Same status and the same headers: nothing tells B that A used the id.
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert sorted(answers[1].headers) == sorted(answers[2].headers)
    charged = [e for e in await stack.ledger.admin.list_events(kind="charge") if e.request_id == "predictable-7"]
    assert sorted(e.org_id for e in charged) == ["ida-org", "idb-org"]
