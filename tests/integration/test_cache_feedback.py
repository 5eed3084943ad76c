"""Wrong-hit feedback end to end on loopback: the cache's ReportWrongHit over
gRPC, and the router's POST /v1/cache/feedback and ReportWrongHit in front of
a real ledger and cache (the frontier upstream is the project's real
OpenAI-compatible test server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from prometheus_client import REGISTRY
from stack import Stack, running_stack

from rationer import errors
from rationer.api.common.v1 import common_pb2
from rationer.api.router.v1 import router_pb2, router_pb2_grpc
from services.ledger.client import LedgerClient
from testsupport.cache import running_cache

Q = "How do I turn on two-factor authentication?"


async def test_cache_report_evicts_only_for_the_key_that_received_the_hit() -> None:
    async with running_cache() as running, running.client() as client:
        stored = await client.store("acme", Q, "Settings > Security")
        await client.store("globex", Q, "Ask IT")
        hit = await client.lookup("acme", Q, request_id="rq-1", key_id="key-a")
        assert hit.hit and hit.entry_id == stored.entry_id
        before = REGISTRY.get_sample_value("rationer_cache_wrong_hits_total", {"tenant": "acme"}) or 0.0
        with pytest.raises(errors.PermissionDenied, match="another API key"):
            await client.report_wrong_hit("acme", "key-b", "rq-1")
        with pytest.raises(errors.NotFound):
            await client.report_wrong_hit("globex", "key-a", "rq-1")
        with pytest.raises(errors.InvalidArgument, match="request_id is empty"):
            await client.report_wrong_hit("acme", "key-a", "")
        report = await client.report_wrong_hit("acme", "key-a", "rq-1")
        assert report.entry_id == stored.entry_id and report.evicted and not report.already_reported
        assert not (await client.lookup("acme", Q)).hit  # gone for everyone in the tenant
        assert (await client.lookup("globex", Q)).hit  # other tenants untouched
        again = await client.report_wrong_hit("acme", "key-a", "rq-1")
        assert again.already_reported and not again.evicted
        assert (await client.stats("acme")).wrong_hits == 1
        assert REGISTRY.get_sample_value("rationer_cache_wrong_hits_total", {"tenant": "acme"}) == before + 1


async def test_cache_reports_are_rate_limited_per_key() -> None:
    async with running_cache() as running, running.client() as client:
        await client.store("acme", Q, "Settings > Security")
        for i in range(11):
            await client.lookup("acme", Q, request_id=f"rq-{i}", key_id="key-a")
        for i in range(10):
            await client.report_wrong_hit("acme", "key-a", f"rq-{i}")
        with pytest.raises(errors.ResourceExhausted, match="retry in"):
            await client.report_wrong_hit("acme", "key-a", "rq-10")


@pytest.fixture(scope="module")
async def stack(frontier_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path_factory.mktemp("feedback"), frontier_base_url=frontier_base_url) as s:
        yield s


async def _cached_answer(http: httpx.AsyncClient, key: str, content: str) -> str:
    """Ask twice until the repeat is served from the cache; its request id."""
    body = {"model": "frontier-mini", "messages": [{"role": "user", "content": content}], "max_tokens": 4,
            "temperature": 0}  # fmt: skip
    auth = {"Authorization": f"Bearer {key}"}
    first = await http.post("/v1/chat/completions", json=body, headers=auth)
    assert first.status_code == 200 and first.headers["x-rationer-cache"] == "miss"
    for _ in range(50):  # the store is written off the response path
        again = await http.post("/v1/chat/completions", json=body, headers=auth)
        if again.headers["x-rationer-cache"] == "hit":
            return again.headers["x-request-id"]
        await asyncio.sleep(0.1)
    raise AssertionError("the repeat never hit the cache")


async def test_http_feedback_evicts_the_entry_for_the_receiving_key(stack: Stack) -> None:
    other = await stack.ledger.admin.create_key(user_id=stack.key.user_id)  # same tenant, another key
    async with httpx.AsyncClient(base_url=stack.http_base_url) as http:
        rid = await _cached_answer(http, stack.api_key, "Name the largest planet in one word.")
        auth = {"Authorization": f"Bearer {stack.api_key}"}
        bad = [
            ({"Authorization": f"Bearer {other.secret}"}, {"request_id": rid}, 403, "another API key"),
            ({}, {"request_id": rid}, 401, "Authorization"),
            (auth, {"request_id": ""}, 400, "request_id"),
            (auth, {"request_id": 7}, 400, "request_id"),
            (auth, {"request_id": rid, "why": "x"}, 400, "unknown field"),
            (auth, ["not", "an", "object"], 400, "JSON object"),
            (auth, {"request_id": "never-served"}, 404, "no cached answer"),
        ]
        for headers, body, status, words in bad:
            resp = await http.post("/v1/cache/feedback", json=body, headers=headers)
            assert resp.status_code == status and words in resp.json()["error"]["message"], (body, resp.text)
        not_json = await http.post("/v1/cache/feedback", content=b"{", headers=auth)
        assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]["message"]
        ok = await http.post("/v1/cache/feedback", json={"request_id": rid}, headers=auth)
        assert ok.status_code == 200 and ok.json() == {
            "object": "cache.feedback", "request_id": rid, "evicted": True, "already_reported": False}  # fmt: skip
        repeat = await http.post("/v1/cache/feedback", json={"request_id": rid}, headers=auth)
        assert repeat.json()["already_reported"] is True and repeat.json()["evicted"] is False
        # The ledger counts it once for the chargeback's wrong_hits column (the repeat adds nothing).
        async with LedgerClient(stack.ledger_address, bearer=stack.api_key) as reader:
            rows = await reader.usage(scope=("key", stack.key.key_id))
        assert sum(r.wrong_hits for r in rows) == 1
        question = [{"role": "user", "content": "Name the largest planet in one word."}]
        body = {"model": "frontier-mini", "messages": question, "max_tokens": 4, "temperature": 0}
        after = await http.post("/v1/chat/completions", json=body, headers=auth)
        assert after.headers["x-rationer-cache"] == "miss"  # the model answers again


async def test_grpc_report_wrong_hit_on_the_router(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.http_base_url) as http:
        rid = await _cached_answer(http, stack.api_key, "Name the smallest planet in one word.")
    md = (("authorization", f"Bearer {stack.api_key}"),)
    async with grpc.aio.insecure_channel(stack.router_address) as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ReportWrongHit(router_pb2.ReportWrongHitRequest(request_id=rid))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ReportWrongHit(router_pb2.ReportWrongHitRequest(request_id=""), metadata=md)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        resp = await stub.ReportWrongHit(router_pb2.ReportWrongHitRequest(request_id=rid), metadata=md)
        assert resp.evicted and not resp.already_reported
        msg = common_pb2.ChatMessage(role="user", content="Name the smallest planet in one word.")
        req = router_pb2.CompleteRequest(messages=[msg], model="frontier-mini",
                                         params=common_pb2.GenerationParams(max_tokens=4, temperature=0))  # fmt: skip
        again = await stub.Complete(req, metadata=md)
        assert not again.route.cache_hit
