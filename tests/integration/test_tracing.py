"""Traces on the real stack, exported to a real OTLP/gRPC receiver on loopback (issue 18, item 11).

Real parts: ledger (SQLite), cache, a SmolLM2 worker behind the local tier,
the router with its HTTP door, each with its own tracer provider and OTLP
exporter (as each service's ``main`` sets up from ``otlp_endpoint``), and a
receiver that speaks the collector's TraceService. One HTTP chat request that
arrives with a W3C ``traceparent`` must come out as one trace across the four
services, with the GenAI attributes on the router's chat span and no prompt
or answer text anywhere in what was exported.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from logcheck import sensitive
from stack import running_stack

from rationer.api.common.v1 import common_pb2
from rationer.api.router.v1 import router_pb2, router_pb2_grpc
from rationer.platform.tracing import Tracing, configure_tracing
from testsupport.otlp import OtlpReceiver, ReceivedSpan, running_otlp_receiver
from testsupport.upstream import instant_frontier

SERVICES = ("router", "ledger", "cache", "slm_worker")
PROMPT = "Name one colour of the flag of Zebraxyzzy in one word."
sensitive(PROMPT)


@pytest.fixture
def traced() -> Iterator[tuple[OtlpReceiver, list[Tracing]]]:
    with running_otlp_receiver() as receiver:
        handles = [configure_tracing(name, receiver.endpoint) for name in SERVICES]
        tracings = [h for h in handles if h is not None]
        try:
            yield receiver, tracings
        finally:
            for t in tracings:
                t.shutdown()


def _by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.span_id: s for s in spans}


async def test_one_chat_request_is_one_trace_across_the_four_services(
    tmp_path: Path, traced: tuple[OtlpReceiver, list[Tracing]]
) -> None:
    receiver, tracings = traced
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    async with instant_frontier() as url, running_stack(tmp_path, frontier_base_url=url, worker=True) as stack:
        async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=120) as http:
            resp = await http.post(
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {stack.api_key}", "traceparent": f"00-{trace_id}-{caller_span}-01"},
                json={"model": "local-small", "messages": [{"role": "user", "content": PROMPT}],
                      "max_tokens": 4, "temperature": 0},
            )  # fmt: skip
        assert resp.status_code == 200, resp.text
        body = resp.json()
        await stack.core.drain()  # background cache store and settlements, so their spans exist
        for t in tracings:
            assert t.force_flush(10)
    received = receiver.spans()
    # The stack's own set-up (prices, keys, the router asking its workers for
    # models) makes traces of its own; the request's is the caller's trace id.
    spans = [s for s in received if s.trace_id == trace_id]
    assert [s for s in received if s.service == "rationer-router"] == [
        s for s in spans if s.service == "rationer-router"
    ], "every router span belongs to the request's trace"
    services = {s.service for s in spans}
    assert {"rationer-router", "rationer-ledger", "rationer-cache", "rationer-slm-worker"} <= services, services

    by_id = _by_id(spans)
    (door,) = [s for s in spans if s.service == "rationer-router" and s.kind == "SERVER"]
    assert door.name == "POST /v1/chat/completions" and door.parent_span_id == caller_span
    assert door.attributes["http.response.status_code"] == 200
    (chat,) = [s for s in spans if s.name.startswith("chat ")]
    assert chat.name == "chat local-small" and chat.parent_span_id == door.span_id and chat.kind == "INTERNAL"
    usage = body["usage"]
    for key, want in {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "local-small",
        "gen_ai.response.model": body["model"],
        "gen_ai.usage.input_tokens": usage["prompt_tokens"],
        "gen_ai.usage.output_tokens": usage["completion_tokens"],
        "rationer.tier": "local-small",
        "rationer.cache": "miss",
        "gen_ai.request.max_tokens": 4,
    }.items():
        assert chat.attributes.get(key) == want, (key, chat.attributes)
    assert chat.attributes["rationer.cost_usd"] > 0

    # Each downstream SERVER span is the child of a router CLIENT span for the same method.
    for s in spans:
        if s.service != "rationer-router" and s.kind == "SERVER":
            parent = by_id[s.parent_span_id]
            assert (parent.service, parent.kind, parent.name) == ("rationer-router", "CLIENT", s.name), s
            # A cache miss answers NOT_FOUND: the caller's outcome, not a server error.
            assert s.attributes["rpc.system"] == "grpc" and s.attributes["rpc.grpc.status_code"] in (0, 5), s
            assert s.status != "STATUS_CODE_ERROR", s
    worker_calls = [s for s in spans if s.service == "rationer-slm-worker"]
    assert {s.name for s in worker_calls} == {"rationer.worker.v1.WorkerService/Generate"}
    assert worker_calls and all(by_id[s.parent_span_id].parent_span_id == chat.span_id for s in worker_calls)

    # Counts and names only: neither the prompt nor the answer leaves the process.
    answer = body["choices"][0]["message"]["content"]
    for raw in receiver.raw():
        assert PROMPT.encode() not in raw and b"Zebraxyzzy" not in raw
        assert len(answer) < 4 or answer.encode() not in raw


async def test_a_streamed_grpc_request_continues_the_callers_trace(
    tmp_path: Path, traced: tuple[OtlpReceiver, list[Tracing]]
) -> None:
    receiver, tracings = traced
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    request = router_pb2.CompleteRequest(
        messages=[common_pb2.ChatMessage(role="user", content=PROMPT)], model="local-small",
        params=common_pb2.GenerationParams(max_tokens=4, temperature=0), no_cache=True,
    )  # fmt: skip
    async with instant_frontier() as url, running_stack(tmp_path, frontier_base_url=url, worker=True) as stack:
        async with grpc.aio.insecure_channel(stack.router_address) as channel:
            metadata = (
                ("authorization", f"Bearer {stack.api_key}"),
                ("traceparent", f"00-{trace_id}-{caller_span}-01"),
            )
            chunks = [
                c async for c in router_pb2_grpc.RouterServiceStub(channel).CompleteStream(request, metadata=metadata)
            ]
        await stack.core.drain()
        for t in tracings:
            assert t.force_flush(10)
    assert chunks
    spans = [s for s in receiver.spans() if s.trace_id == trace_id]
    (door,) = [s for s in spans if s.service == "rationer-router" and s.kind == "SERVER"]
    assert door.name == "rationer.router.v1.RouterService/CompleteStream" and door.parent_span_id == caller_span
    assert door.attributes["rpc.grpc.status_code"] == 0
    (chat,) = [s for s in spans if s.name.startswith("chat ")]
    assert chat.parent_span_id == door.span_id and chat.attributes["rationer.streamed"] is True
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0 and chat.attributes["rationer.tier"] == "local-small"
    assert {"rationer-ledger", "rationer-slm-worker"} <= {s.service for s in spans}
    for raw in receiver.raw():
        assert b"Zebraxyzzy" not in raw
