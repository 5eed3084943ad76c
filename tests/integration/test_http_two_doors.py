"""The same conversation through the OpenAI door and the Messages door: one router, one bill.

Real stack: frontier tiers on a real OpenAI-compatible upstream
(llama_cpp.server + SmolLM2) and a ``kind = "anthropic"`` tier on the local
Messages wire server (anthropic_wire.py). Both doors must pick the same tier,
share the semantic cache both ways, and leave the same charge in the ledger.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest
from anthropic_wire import WireServer, anthropic_wire_server
from logcheck import sensitive
from stack import Stack, frontier_tiers, running_stack

from rationer.api.ledger.v1 import ledger_pb2
from services.router.settings import TierSettings

SYSTEM = "Be brief."
sensitive("Name the capital of France in one word.", "Name the capital of Italy in one word.",
          "Name the capital of Spain in one word.", "hello there wire")  # fmt: skip
WIRE_KEY, WIRE_MODEL = "sk-ant-wire", "claude-wire"
NO_CACHE = {"Cache-Control": "no-cache"}


@pytest.fixture(scope="module")
async def wire() -> AsyncIterator[WireServer]:
    async with anthropic_wire_server(WIRE_KEY, (WIRE_MODEL,)) as server:
        yield server


@pytest.fixture(scope="module")
async def stack(frontier_base_url: str, wire: WireServer, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[Stack]:  # fmt: skip
    claude = TierSettings(name="claude", kind="anthropic", rank=2, model=WIRE_MODEL, base_url=wire.base_url,
                          api_key=WIRE_KEY, max_retries=0)  # fmt: skip
    cached = claude.model_copy(update={"name": "claude-cached", "rank": 3, "cache_system": True})
    async with running_stack(tmp_path_factory.mktemp("two-doors"), frontier_base_url=frontier_base_url,
                             tiers=[*frontier_tiers(frontier_base_url), claude, cached]) as s:  # fmt: skip
        yield s


async def charge_event(stack: Stack, request_id: str) -> ledger_pb2.UsageEvent:
    events = await stack.ledger.admin.list_events(kind="charge")
    found = [e for e in events if e.request_id.split(":")[0] == request_id]
    assert len(found) == 1, f"expected one charge for {request_id}, got {len(found)}"
    return found[0]


async def via_openai(stack: Stack, question: str, model: str, headers: dict[str, str]) -> tuple[str, Any]:
    async with openai.AsyncOpenAI(base_url=f"{stack.http_base_url}/v1", api_key=stack.api_key, max_retries=0) as c:
        raw = await c.chat.completions.with_raw_response.create(
            model=model, max_tokens=8, temperature=0, extra_headers=headers,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        )  # fmt: skip
    return raw.parse().choices[0].message.content or "", raw.headers


async def via_messages(stack: Stack, question: str, model: str, headers: dict[str, str]) -> tuple[str, Any]:
    async with anthropic.AsyncAnthropic(base_url=stack.http_base_url, api_key=stack.api_key, max_retries=0) as c:
        raw = await c.messages.with_raw_response.create(
            # This SDK version no longer sends temperature itself; the API still takes it.
            model=model, max_tokens=8, system=SYSTEM, extra_headers=headers, extra_body={"temperature": 0},
            messages=[{"role": "user", "content": question}],
        )  # fmt: skip
    block = (await raw.parse()).content[0]
    return block.text if block.type == "text" else "", raw.headers


@pytest.mark.parametrize("model", ["frontier-mini", "claude"])
async def test_both_doors_pick_the_same_tier_and_charge_the_same(stack: Stack, model: str) -> None:
    question = "Name the capital of France in one word." if model != "claude" else "hello there wire"
    text_o, head_o = await via_openai(stack, question, model, NO_CACHE)
    text_m, head_m = await via_messages(stack, question, model, NO_CACHE)
    assert text_o == text_m and text_o
    assert head_o["x-rationer-tier"] == head_m["x-rationer-tier"] == model
    assert head_o["x-rationer-cost-usd"] == head_m["x-rationer-cost-usd"]
    one, two = [await charge_event(stack, h["x-request-id"]) for h in (head_o, head_m)]
    assert (one.tier, one.prompt_tokens, one.completion_tokens, one.cost.nano_usd) == (
        two.tier, two.prompt_tokens, two.completion_tokens, two.cost.nano_usd)  # fmt: skip
    assert one.cost.nano_usd > 0


async def _hit(stack: Stack, ask: Any, question: str) -> tuple[str, Any]:
    # The answer is stored in the background after the first call: poll briefly.
    for _ in range(20):
        text, headers = await ask(stack, question, "frontier-mini", {})
        if headers["x-rationer-cache"] == "hit":
            return text, headers
        await asyncio.sleep(0.2)
    raise AssertionError("the other door never hit the cache")


@pytest.mark.parametrize("first", ["openai", "messages"])
async def test_an_answer_cached_by_one_door_is_a_hit_on_the_other(stack: Stack, first: str) -> None:
    doors = (via_openai, via_messages) if first == "openai" else (via_messages, via_openai)
    question = "Name the capital of Italy in one word." if first == "openai" else \
        "Name the capital of Spain in one word."  # fmt: skip
    text, headers = await doors[0](stack, question, "frontier-mini", {})
    assert headers["x-rationer-cache"] == "miss"
    again, hit = await _hit(stack, doors[1], question)
    assert again == text and hit["x-rationer-tier"] == headers["x-rationer-tier"]
    assert hit["x-rationer-cost-usd"] == "0" or float(hit["x-rationer-cost-usd"]) == 0
    assert float(hit["x-rationer-savings-usd"]) > 0


async def test_prompt_cache_usage_of_an_anthropic_tier_is_priced_at_its_own_rates(stack: Stack) -> None:
    # The stack's "claude-cached" tier marks the system prompt for the provider's cache.
    await stack.ledger.admin.set_price("claude-cached", WIRE_MODEL, 3_000_000_000, 15_000_000_000,
                                       cache_read_per_million=300_000_000,
                                       cache_creation_per_million=3_750_000_000)  # fmt: skip
    system = "You answer questions about the wire protocol briefly and exactly. " * 8
    system_words = len(system.split())
    charges = []
    async with anthropic.AsyncAnthropic(base_url=stack.http_base_url, api_key=stack.api_key, max_retries=0) as c:
        for _ in range(2):
            raw = await c.messages.with_raw_response.create(
                model="claude-cached", max_tokens=8, system=system, extra_headers=NO_CACHE,
                messages=[{"role": "user", "content": "hello there wire"}],
            )  # fmt: skip
            msg = await raw.parse()
            charges.append(await charge_event(stack, raw.headers["x-request-id"]))
    user_words, out = 3, msg.usage.output_tokens
    assert all(ch.prompt_tokens == system_words + user_words for ch in charges)
    written = system_words * 3750 + user_words * 3000 + out * 15000  # nano-USD (whole: no rounding)
    read = system_words * 300 + user_words * 3000 + out * 15000
    assert (charges[0].cost.nano_usd, charges[1].cost.nano_usd) == (written, read)
