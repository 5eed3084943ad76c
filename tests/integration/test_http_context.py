"""Routing by context length through the real door, with a real SmolLM2 worker (issue 18 item 8).

The local tier's worker has a 512-token context here (2,048 by default): a
prompt that does not fit goes to the frontier tier with ``auto``, and a
request that names the local tier, or a key that may use only it, gets a
400 naming the limit, never the worker's internal address. A second,
local-only stack checks that with no frontier tier no savings are claimed
(item 7).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from addresses import assert_no_internal_address
from stack import Stack, running_stack

from services.router.settings import TierSettings
from testsupport.slm_worker import SMOLLM2
from testsupport.upstream import instant_frontier

LONG = "Please summarise the following notes. " + "The meeting moved to three in the afternoon. " * 120
SHORT = "Say hello."


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with instant_frontier() as base:
        tiers = [TierSettings(name="local-small", kind="local", rank=0, model=SMOLLM2),
                 TierSettings(name="frontier", kind="frontier", rank=1, model="instant", base_url=base,
                              max_retries=0)]  # fmt: skip
        async with running_stack(tmp_path_factory.mktemp("context"), frontier_base_url=base, tiers=tiers,
                                 worker=True) as s:  # fmt: skip
            yield s


async def post(stack: Stack, body: dict[str, Any], key: str = "") -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=120) as http:
        resp = await http.post("/v1/chat/completions", json={"no_cache": True, "max_tokens": 8, **body},
                               headers={"Authorization": f"Bearer {key or stack.api_key}"})  # fmt: skip
    assert_no_internal_address(resp.status_code, resp.text)
    return resp


async def test_auto_routes_a_prompt_too_long_for_the_local_window_to_the_frontier(stack: Stack) -> None:
    short = await post(stack, {"model": "auto", "messages": [{"role": "user", "content": SHORT}]})
    assert short.status_code == 200 and short.headers["x-rationer-tier"] == "local-small"
    long = await post(stack, {"model": "auto", "messages": [{"role": "user", "content": LONG}]})
    assert long.status_code == 200, long.text
    assert long.headers["x-rationer-tier"] == "frontier" and "x-rationer-fallbacks" not in long.headers


async def test_naming_the_local_tier_with_a_long_prompt_is_400_naming_the_limit(stack: Stack) -> None:
    for model in ("local-small", SMOLLM2):
        resp = await post(stack, {"model": model, "messages": [{"role": "user", "content": LONG}]})
        assert resp.status_code == 400, resp.text
        err = resp.json()["error"]
        assert "tier 'local-small' has a context window of 512 tokens" in err["message"]
        assert err["param"] == "messages" and err["type"] == "invalid_request_error"


async def test_a_local_only_key_gets_400_naming_the_limit_not_a_worker_error(stack: Stack) -> None:
    key = await stack.new_key(org="ctx-local", allowed_tiers=["local-small"])
    resp = await post(stack, {"model": "auto", "messages": [{"role": "user", "content": LONG}]}, key.secret)
    assert resp.status_code == 400, resp.text
    message = resp.json()["error"]["message"]
    assert "largest context window among the tiers this key can use is 512 tokens (tier 'local-small')" in message
    assert "worker" not in message


async def test_max_tokens_past_the_window_moves_the_request_too(stack: Stack) -> None:
    resp = await post(stack, {"model": "auto", "max_tokens": 600, "messages": [{"role": "user", "content": SHORT}]})
    assert resp.status_code == 200 and resp.headers["x-rationer-tier"] == "frontier"


async def test_with_only_local_tiers_no_savings_are_claimed(tmp_path: Path) -> None:
    # Item 7: no frontier tier and no explicit reference: savings are 0 (the ledger still seeds gpt-4o).
    async with instant_frontier() as base, running_stack(
        tmp_path, frontier_base_url=base, tiers=[TierSettings(name="local-small", kind="local", rank=0, model=SMOLLM2)],
        worker=True,
    ) as local:  # fmt: skip
        resp = await post(local, {"model": "auto", "messages": [{"role": "user", "content": SHORT}]})
        assert resp.status_code == 200 and float(resp.headers["x-rationer-cost-usd"].lstrip("$")) > 0
        assert float(resp.headers["x-rationer-savings-usd"].lstrip("$")) == 0
        (ev,) = [e for e in await local.ledger.admin.list_events(kind="charge")
                 if e.request_id == resp.headers["x-request-id"]]  # fmt: skip
        assert ev.counterfactual_cost.nano_usd == ev.cost.nano_usd
