"""The router's /metrics and access log, on a real stack (ledger, cache, router, real HTTP upstreams).

One module-scoped stack is driven through every path that counts: an
``auto`` request whose first tier fails (a fallback, then a billed answer on
a cheaper-than-reference tier), the same prompt again (a cache hit), a
wrong-hit report, a 400, a 401, a rate-limit 429, a budget 429, and gRPC
calls. Then:

- every query of the Grafana dashboard (deploy/grafana/) names only metrics
  the router's /metrics actually exports, and the values moved: cost > 0,
  routing and cache savings > 0, a denial of each kind, a fallback, a
  wrong hit, no hold left outstanding;
- there is one access-log line per request with its fields, and neither the
  prompt nor a key appears in the log.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from aiohttp import web
from logcheck import LogWindow, sensitive
from prometheus_client.parser import text_string_to_metric_families
from stack import Stack, running_stack

from rationer.api.router.v1 import router_pb2, router_pb2_grpc
from rationer.platform.net import free_port
from services.router.settings import TierSettings
from testsupport.upstream import instant_frontier

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "rationer-router.json"
PROMPT = f"Name the capital of the tangerine archipelago {uuid.uuid4().hex[:10]}"
GRPC_PROMPT = f"Spell the word saffron backwards {uuid.uuid4().hex[:10]}"
STREAM_PROMPT = f"List three colours of the heliotrope garden {uuid.uuid4().hex[:10]}"
sensitive(PROMPT, GRPC_PROMPT, STREAM_PROMPT)
# The line the access log writes through the session's console renderer.
ACCESS = re.compile(r"\[\w+\s*\] request\s+(?P<fields>.*door=.*)$")
PAIR = re.compile(r"(\w+)=(\S+)")


async def failing_upstream(port: int) -> web.AppRunner:
    """An OpenAI-shaped upstream that lists models but fails every completion (a tier that falls back)."""

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "flaky", "object": "model"}]})

    async def chat(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "overloaded", "type": "server_error"}}, status=503)

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest.fixture(scope="module")
async def driven(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    flaky = await failing_upstream(port)
    try:
        async with instant_frontier() as base:
            # Thresholds pin "auto" on the cheapest tier, the failing one; it falls back to frontier-mini,
            # which is cheaper than the reference ("frontier"), so routing saves.
            tiers = [
                TierSettings(name="frontier-flaky", kind="frontier", rank=0, model="flaky",
                             base_url=f"http://127.0.0.1:{port}/v1", max_retries=0),
                TierSettings(name="frontier-mini", kind="frontier", rank=1, model="instant-mini", base_url=base,
                             max_retries=0, threshold=0.999),
                TierSettings(name="frontier", kind="frontier", rank=2, model="instant", base_url=base,
                             max_retries=0, threshold=0.9999),
            ]  # fmt: skip
            async with running_stack(tmp_path_factory.mktemp("telemetry"), frontier_base_url=base,
                                     tiers=tiers) as stack:  # fmt: skip
                sensitive(stack.api_key)
                log = LogWindow(_session_log(tmp_path_factory))
                calls = await _drive(stack)
                yield {"stack": stack, "calls": calls, "log": log.text(), "metrics": await _scrape(stack)}
    finally:
        await flaky.cleanup()


def _session_log(factory: pytest.TempPathFactory) -> Path:
    path = factory.getbasetemp() / "in-process-services.log"
    if not path.exists():
        pytest.skip("the log-secrets plugin (tests/logcheck.py) is not active")
    return path


async def _drive(stack: Stack) -> list[dict[str, Any]]:
    """Every request this module checks, as (door, expected status, request id, key id, expectations)."""
    admin = stack.ledger.admin
    # Each attempt counts against a rate limit: this key may not use the failing tier.
    limited = await stack.new_key(org="tele-rate", allowed_tiers=["frontier-mini", "frontier"])
    await admin.set_rate_limit("key", limited.key_id, rpm=1)
    broke = await stack.new_key(org="tele-budget")
    await admin.set_budget("key", broke.key_id, unit="usd", period="monthly", hard_limit=1)
    sensitive(limited.secret, broke.secret)
    main = stack.key
    calls: list[dict[str, Any]] = []

    async def chat(key: str, status: int, body: Any, key_id: str = "", **expect: Any) -> httpx.Response:
        rid = uuid.uuid4().hex
        resp = await http.post("/v1/chat/completions", json=body,
                               headers={"Authorization": f"Bearer {key}", "x-request-id": rid})  # fmt: skip
        assert resp.status_code == status, resp.text
        calls.append({"door": "http", "status": str(status), "request_id": rid, "key_id": key_id, **expect})
        return resp

    def ask(text: str) -> dict[str, Any]:
        return {"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 16}

    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=30) as http:
        first = await chat(main.secret, 200, ask(PROMPT), main.key_id, cache="miss", tier="frontier-mini",
                           fallbacks="1")  # fmt: skip
        assert json.loads(first.content)["rationer"]["fallbacks"] == ["frontier-flaky"]
        hit = await chat(main.secret, 200, ask(PROMPT), main.key_id, cache="hit", cost_nano_usd="0")
        assert hit.headers["x-rationer-cache"] == "hit"
        await chat(main.secret, 400, {"messages": "not a list"}, main.key_id, error_code="INVALID_ARGUMENT")
        await chat("not-a-rationer-key", 401, ask(PROMPT), error_code="UNAUTHENTICATED")
        await chat(limited.secret, 200, ask("first of one per minute"), limited.key_id)
        await chat(limited.secret, 429, ask("second of one per minute"), limited.key_id,
                   limit=f"rpm:key:{limited.key_id}", error_code="RESOURCE_EXHAUSTED")  # fmt: skip
        await chat(broke.secret, 429, ask("a request over budget"), broke.key_id, error_code="RESOURCE_EXHAUSTED")
        streamed = await chat(main.secret, 200, {**ask(STREAM_PROMPT), "model": "frontier-mini", "stream": True},
                              main.key_id, tier="frontier-mini", cache="miss")  # fmt: skip
        assert "[DONE]" in streamed.text
        embedded = await http.post("/v1/embeddings", json={"input": ["one vector please"], "model": "m"},
                                   headers={"Authorization": f"Bearer {main.secret}"})  # fmt: skip
        assert embedded.status_code == 200, embedded.text
        calls.append({"door": "http", "status": "200", "request_id": "", "key_id": main.key_id,
                      "route": "/v1/embeddings", "tier": "embeddings"})  # fmt: skip
        feedback = await http.post("/v1/cache/feedback", json={"request_id": hit.headers["x-request-id"]},
                                   headers={"Authorization": f"Bearer {main.secret}"})  # fmt: skip
        assert feedback.status_code == 200, feedback.text
        calls.append({"door": "http", "status": "200", "request_id": "", "key_id": main.key_id,
                      "route": "/v1/cache/feedback"})  # fmt: skip
    async with grpc.aio.insecure_channel(stack.router_address) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        req = router_pb2.CompleteRequest(model="frontier-mini", messages=[{"role": "user", "content": GRPC_PROMPT}])
        rid = uuid.uuid4().hex
        out = await stub.Complete(req, metadata=_md(main.secret, rid))
        assert out.route.cost.nano_usd > 0
        calls.append({"door": "grpc", "status": "OK", "request_id": rid, "key_id": main.key_id,
                      "tier": "frontier-mini"})  # fmt: skip
        rid = uuid.uuid4().hex
        streamed_req = router_pb2.CompleteRequest(
            model="frontier-mini", messages=[{"role": "user", "content": STREAM_PROMPT + " again"}]
        )
        chunks = [c async for c in stub.CompleteStream(streamed_req, metadata=_md(main.secret, rid))]
        assert chunks[-1].final
        out_tokens = str(chunks[-1].route.usage.completion_tokens)
        calls.append({"door": "grpc", "status": "OK", "request_id": rid, "key_id": main.key_id,
                      "method": "CompleteStream", "tokens_out": out_tokens})  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.Complete(req, metadata=(("authorization", "Bearer not-a-rationer-key"),))
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        calls.append({"door": "grpc", "status": "UNAUTHENTICATED", "request_id": "", "key_id": ""})
    return calls


def _md(key: str, rid: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"), ("x-request-id", rid))


async def _scrape(stack: Stack) -> dict[str, float]:
    """Every sample of the router's /metrics, summed over labels not named: {"name{k=v,...}": value}."""
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=10) as http:
        text = (await http.get("/metrics")).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
            for k, v in s.labels.items():
                key = f"{s.name}{{{k}={v}}}"
                out[key] = out.get(key, 0.0) + s.value
    return out


def _panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        exprs = [t["expr"] for t in panel.get("targets", [])]
        assert exprs, f"panel {panel['title']!r} has no query"
        queries += [(panel["title"], e) for e in exprs]
    return queries


def test_every_dashboard_query_names_metrics_the_router_exports(driven: dict[str, Any]) -> None:
    exported = {name.split("{")[0] for name in driven["metrics"]}
    for title, expr in _panel_queries():
        names = set(re.findall(r"\brationer_[a-z_]+", expr))
        assert names, f"panel {title!r} queries no Rationer metric: {expr}"
        assert names <= exported, f"panel {title!r} queries {sorted(names - exported)}, not exported"
    titles = " ".join(t.lower() for t, _ in _panel_queries())
    for topic in ("spend", "tokens", "savings", "cache hit", "denials", "fallbacks", "holds", "backlog", "latency"):
        assert topic in titles, f"no panel about {topic}"


def test_the_values_move_after_real_requests(driven: dict[str, Any]) -> None:
    m = driven["metrics"]
    team = driven["stack"].key.team_id
    assert m["rationer_router_cost_usd_total{tier=frontier-mini}"] > 0
    assert m[f"rationer_router_cost_usd_total{{team={team}}}"] > 0
    assert m["rationer_router_input_tokens_total"] > 0 and m["rationer_router_output_tokens_total"] > 0
    assert m["rationer_router_savings_usd_total{mechanism=routing}"] > 0
    assert m["rationer_router_savings_usd_total{mechanism=cache}"] > 0
    assert m["rationer_router_input_tokens_total{tier=embeddings}"] > 0
    assert m["rationer_router_cache_hits_total"] == 1
    assert m["rationer_router_cache_wrong_hits_total"] == 1
    assert m["rationer_router_fallbacks_total{tier=frontier-flaky}"] >= 1
    assert m["rationer_router_denials_total{kind=rate_limit}"] >= 1
    assert m["rationer_router_denials_total{kind=budget}"] >= 1
    assert m["rationer_router_holds_outstanding"] == 0  # every hold placed was committed or released
    assert m["rationer_router_journal_backlog"] == 0
    assert m["rationer_router_answer_seconds_count{source=cache}"] == 1
    # One registry for the whole router: the gRPC server's and the HTTP door's series are on the same page.
    assert m["rationer_rpcs_total{service=router}"] >= 2
    assert m["rationer_http_requests_total{route=/v1/chat/completions}"] >= 7
    assert set(k.split("team=")[1].rstrip("}") for k in m if k.startswith("rationer_router_model_answers_total{team="))
    bounded = {"frontier-flaky", "frontier-mini", "frontier", "embeddings", "none", "other"}
    tiers = {k.split("tier=")[1].rstrip("}") for k in m if "{tier=" in k and k.startswith("rationer_router_")}
    assert tiers <= bounded


def _access_lines(text: str) -> list[dict[str, str]]:
    lines = []
    for line in text.splitlines():
        match = ACCESS.search(line)
        if match:
            fields = dict(PAIR.findall(match.group("fields")))
            fields["_line"] = line
            lines.append(fields)
    return lines


def test_one_access_line_per_request_with_its_fields(driven: dict[str, Any]) -> None:
    lines = [f for f in _access_lines(driven["log"]) if f.get("method") != "GET"]
    calls = driven["calls"]
    assert len(lines) == len(calls), "\n".join(f["_line"] for f in lines)
    for call, line in zip(calls, lines, strict=True):
        assert line["door"] == call["door"] and line["status"] == call["status"], line["_line"]
        for field in ("latency_ms", "request_id"):
            assert field in line, line["_line"]
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line["_line"]), "no timestamp"
        for name, want in call.items():
            if name in ("door", "status") or not want:
                continue
            assert line.get(name) == want, (name, line["_line"])
        if call["key_id"]:
            assert line.get("team_id"), line["_line"]
        if line["route" if call["door"] == "http" else "method"] in ("/v1/chat/completions", "Complete") and call[
            "status"
        ] in ("200", "OK"):
            for field in ("tier", "model", "tokens_in", "tokens_out", "cost_nano_usd", "cache"):
                assert field in line, (field, line["_line"])
    billed = [line for line in lines if line.get("cache") == "miss" and line["status"] == "200"]
    assert billed and all(int(line["cost_nano_usd"]) > 0 for line in billed)


def test_no_prompt_text_or_key_in_the_access_log(driven: dict[str, Any]) -> None:
    text = driven["log"]
    assert _access_lines(text)
    stack = driven["stack"]
    for secret in (
        PROMPT,
        GRPC_PROMPT,
        STREAM_PROMPT,
        stack.api_key,
        "first of one per minute",
        "a request over budget",
    ):
        assert secret not in text
