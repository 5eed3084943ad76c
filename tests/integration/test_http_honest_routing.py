"""Honest routing through the real doors (issue 18 items 6 and 8).

A frontier tier whose endpoint nothing listens on is probed at start: it is
not ready on ``/ready`` and in the ``rationer up`` banner, a request naming
it gets 503 naming the tier (never another tier's answer, never an internal
address), and only a key whose policy allows fallback is served elsewhere,
told so by ``x-rationer-fallbacks`` (HTTP) and the trailing metadata and
``RouteInfo.fallbacks`` (gRPC).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import httpx
import pytest
from stack import Stack, running_stack

from rationer.api.common.v1 import common_pb2
from rationer.api.router.v1 import router_pb2, router_pb2_grpc
from rationer.platform.net import free_port
from rationer.up import UpOptions, banner
from rationer.up_ready import fetch_ready
from services.router.settings import TierSettings
from testsupport.upstream import instant_frontier

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with instant_frontier() as base:
        tiers = [
            TierSettings(name="frontier-mini", kind="frontier", rank=0, model="instant", base_url=base, max_retries=0),
            TierSettings(name="frontier", kind="frontier", rank=1, model="gpt-4o", max_retries=0,
                         base_url=f"http://127.0.0.1:{free_port()}/v1"),
        ]  # fmt: skip
        async with running_stack(tmp_path_factory.mktemp("honest"), frontier_base_url=base, tiers=tiers) as s:
            yield s


@pytest.fixture
def fallback_allowed(stack: Stack) -> Iterator[None]:
    """The key's policy allows fallback (``[router] fallback_for``), for one test."""
    before = stack.core.config
    stack.core.config = dataclasses.replace(before, fallback_for=(f"key:{stack.key.key_id}",))
    yield
    stack.core.config = before


async def post(stack: Stack, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=30) as http:
        return await http.post("/v1/chat/completions", json=body,
                               headers={"Authorization": f"Bearer {stack.api_key}"})  # fmt: skip


def no_internal_address(resp: httpx.Response) -> None:
    assert "127.0.0.1" not in resp.text and ":74" not in resp.text, resp.text


async def test_an_unreachable_frontier_is_not_ready(stack: Stack) -> None:
    for path in ("/ready", "/readyz"):
        async with httpx.AsyncClient(base_url=stack.http_base_url) as http:
            resp = await http.get(path)
        body = resp.json()
        assert resp.status_code == 200 and body["status"] == "degraded"
        assert body["healthy_tiers"] == ["frontier-mini"] and body["unready_tiers"] == ["frontier"]


async def test_the_up_banner_warns_about_the_unready_tier(stack: Stack) -> None:
    ready = await fetch_ready(stack.http_base_url)
    text = banner(UpOptions(), {"demo_api_key": "rk_demo", "admin_api_key": "rk_admin"}, ready)
    assert "tiers ready : frontier-mini" in text
    assert "WARNING     : not ready: frontier" in text and "503" in text
    assert "unknown" in banner(UpOptions(), {"demo_api_key": "rk_demo"}, await fetch_ready(
        f"http://127.0.0.1:{free_port()}", tries=1))  # fmt: skip


@pytest.mark.parametrize("model", ["frontier", "gpt-4o"])
async def test_naming_an_unready_tier_is_503_naming_it(stack: Stack, model: str) -> None:
    resp = await post(stack, {"model": model, "messages": HELLO, "max_tokens": 4, "no_cache": True})
    assert resp.status_code == 503, resp.text
    err = resp.json()["error"]
    assert err["type"] == "service_unavailable_error"
    assert "tier 'frontier') is unavailable" in err["message"] or "tier 'frontier' is unavailable" in err["message"]
    assert "no other tier was used" in err["message"]
    assert "x-rationer-fallbacks" not in resp.headers
    no_internal_address(resp)


async def test_auto_is_served_by_a_ready_tier_without_a_fallback_header(stack: Stack) -> None:
    resp = await post(stack, {"model": "auto", "messages": HELLO, "max_tokens": 4, "no_cache": True})
    assert resp.status_code == 200 and resp.headers["x-rationer-tier"] == "frontier-mini"
    assert "x-rationer-fallbacks" not in resp.headers


@pytest.mark.usefixtures("fallback_allowed")
async def test_a_key_allowed_to_fall_back_is_served_and_told(stack: Stack) -> None:
    resp = await post(stack, {"model": "frontier", "messages": HELLO, "max_tokens": 4, "no_cache": True})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-rationer-tier"] == "frontier-mini"
    assert resp.headers["x-rationer-fallbacks"] == "frontier"


@pytest.mark.usefixtures("fallback_allowed")
async def test_the_grpc_route_says_so_too(stack: Stack) -> None:
    req = router_pb2.CompleteRequest(messages=[common_pb2.ChatMessage(role="user", content="Say hi.")],
                                     params=common_pb2.GenerationParams(max_tokens=4), model="frontier",
                                     no_cache=True)  # fmt: skip
    async with grpc.aio.insecure_channel(stack.router_address) as ch:
        call = router_pb2_grpc.RouterServiceStub(ch).Complete(req, metadata=(("authorization",
                                                                             f"Bearer {stack.api_key}"),))
        resp = await call
        trailing = dict(await call.trailing_metadata() or ())
    assert resp.route.tier == "frontier-mini" and list(resp.route.fallbacks) == ["frontier"]
    assert trailing["x-rationer-fallbacks"] == "frontier"


async def test_grpc_naming_an_unready_tier_is_unavailable_naming_it(stack: Stack) -> None:
    req = router_pb2.CompleteRequest(messages=[common_pb2.ChatMessage(role="user", content="Say hi.")],
                                     params=common_pb2.GenerationParams(max_tokens=4), model="frontier",
                                     no_cache=True)  # fmt: skip
    async with grpc.aio.insecure_channel(stack.router_address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await router_pb2_grpc.RouterServiceStub(ch).Complete(
                req, metadata=(("authorization", f"Bearer {stack.api_key}"),))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "tier 'frontier' is unavailable" in (info.value.details() or "")
    assert "127.0.0.1" not in json.dumps(info.value.details())
