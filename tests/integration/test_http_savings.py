"""Savings through the real door, against the configured reference only (issue 18 item 7).

The reference is the most expensive configured frontier tier ("auto"), a
tier the operator names, or none; with none, no savings are claimed, on
the response or in the ledger's counterfactual (docs/ledger.md, "Savings").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from stack import PRICES, Stack, frontier_tiers, running_stack

from rationer.platform.money import usd_to_nano
from testsupport.upstream import instant_frontier

HELLO = [{"role": "user", "content": "Say hello."}]


def nano(in_out: tuple[int, int], prompt: int, completion: int) -> int:
    return -(-(prompt * in_out[0] + completion * in_out[1]) // 1_000_000)


@pytest.fixture(scope="module")
async def frontier() -> AsyncIterator[str]:
    async with instant_frontier() as base:
        yield base


async def _ask(stack: Stack, **body: object) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=30) as http:
        resp = await http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {stack.api_key}"},
                               json={"messages": HELLO, "max_tokens": 8, "no_cache": True, **body})  # fmt: skip
    assert resp.status_code == 200, resp.text
    return resp


async def _charge(stack: Stack, request_id: str) -> tuple[int, int, int, int]:
    (ev,) = [e for e in await stack.ledger.admin.list_events(kind="charge") if e.request_id == request_id]
    return ev.cost.nano_usd, ev.counterfactual_cost.nano_usd, ev.prompt_tokens, ev.completion_tokens


@pytest.mark.parametrize(("reference", "expect"), [("auto", "frontier"), ("frontier-mini", ""), ("none", "")])
async def test_savings_are_measured_against_the_configured_reference(
    tmp_path: Path, frontier: str, reference: str, expect: str
) -> None:
    async with running_stack(tmp_path, frontier_base_url=frontier, tiers=frontier_tiers(frontier),
                             reference_tier=reference) as stack:  # fmt: skip
        resp = await _ask(stack, model="frontier-mini")
        cost, cf, prompt, completion = await _charge(stack, resp.headers["x-request-id"])
        assert cost == nano(PRICES["frontier-mini"], prompt, completion) > 0
        saved = usd_to_nano(resp.headers["x-rationer-savings-usd"])
        if expect:
            # The answer's own length on the dearest configured frontier tier, minus what it cost.
            assert cf == nano(PRICES[expect], prompt, completion) and saved == cf - cost > 0
        else:
            # The reference is the tier that served (or there is none): nothing saved, nothing claimed.
            assert cf == cost and saved == 0
