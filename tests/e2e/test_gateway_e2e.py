"""End to end: four real services as separate processes on loopback, plus a
real OpenAI-compatible server (llama_cpp.server + SmolLM2) as the frontier.

The stack is started the way operators start it, by the ``rationer up``
supervisor, with a test overlay for prices and budget pressure.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from rationer.client import AsyncClient, Route
from rationer.errors import ResourceExhausted, Unauthenticated
from rationer.platform.net import free_port, free_port_block
from rationer.up import Supervisor, UpOptions
from services.ledger.admin_client import LedgerAdminClient
from services.router.tokens import ByteBound
from services.router.types import Message

pytestmark = pytest.mark.slow

EASY = "Say hi."
HARD = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins "
    "for her friends every day with four. She sells the remainder at the farmers' market daily for $2 "
    "per fresh duck egg. How much in dollars does she make every day at the farmers' market?"
)
NANO = 1_000_000_000


class Stack:
    def __init__(self, sup: Supervisor, creds: dict[str, str], opts: UpOptions) -> None:
        self.sup, self.creds, self.opts = sup, creds, opts
        self.router = f"127.0.0.1:{opts.base_port}"
        self.ledger = f"127.0.0.1:{opts.base_port + 1}"
        self.routes: list[Route] = []

    def admin(self) -> LedgerAdminClient:
        return LedgerAdminClient(self.ledger, self.creds["admin_token"])

    async def new_key(self, *, budget_nano: int | None = None, allowed: tuple[str, ...] = ()) -> tuple[str, str]:
        async with self.admin() as admin:
            org = await admin.create_org(f"org-{os.urandom(3).hex()}")
            team = await admin.create_team(org.id, "eng")
            user = await admin.create_user(team.id, "dev@example.com")
            created = await admin.create_key(user_id=user.id, allowed_tiers=allowed)
            if budget_nano is not None:
                await admin.set_budget("key", created.key.key_id, unit="usd", period="monthly", hard_limit=budget_nano)
        return created.secret, created.key.key_id


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory, frontier_base_url: str) -> AsyncIterator[Stack]:
    data: Path = tmp_path_factory.mktemp("up")
    opts = UpOptions(
        data_dir=data,
        base_port=free_port_block(4),
        http_port=free_port(),
        worker_threads=1,
        frontier_url=frontier_base_url,
        frontier_model="frontier-sim",
        base_env=dict(os.environ),
        overrides={
            # Local compute priced high ($1-2/M) so a small budget drains
            # in a few calls; the frontier is gpt-4o's list price.
            "ledger": {"prices": [
                {"tier": "local-small", "model": "smollm2-135m-instruct",
                 "input_per_million_nano_usd": NANO, "output_per_million_nano_usd": NANO},
                {"tier": "local-large", "model": "gemma3-270m",
                 "input_per_million_nano_usd": 2 * NANO, "output_per_million_nano_usd": 2 * NANO},
                {"tier": "frontier", "model": "frontier-sim",
                 "input_per_million_nano_usd": 5 * NANO // 2, "output_per_million_nano_usd": 10 * NANO},
            ], "reference_tier": "frontier"},
            # fallback_for: the worker-kill test names local-small and expects the
            # frontier to take over; named tiers are not replaced otherwise.
            "router": {"worker_refresh_s": 0.5, "fallback_for": ["*"],
                       "pressure": {"start_fraction": 0.6, "floor_fraction": 0.0}},
        },
    )  # fmt: skip
    sup = Supervisor(opts)
    try:
        await sup.start()
        creds = await sup.credentials()
        yield Stack(sup, creds, opts)
    finally:
        sup.stop()


async def test_easy_prompt_goes_local_and_hard_goes_frontier(stack: Stack) -> None:
    async with AsyncClient(stack.router, stack.creds["demo_api_key"]) as c:
        easy = await c.complete(EASY, max_tokens=8, no_cache=True)
        hard = await c.complete(HARD, max_tokens=8, no_cache=True)
    assert easy.route.tier.startswith("local"), easy.route
    assert hard.route.tier == "frontier", hard.route
    assert hard.route.complexity > easy.route.complexity
    assert hard.route.cost_nano_usd > easy.route.cost_nano_usd > 0
    stack.routes += [easy.route, hard.route]


async def test_repeat_is_a_cache_hit_at_zero_cost(stack: Stack) -> None:
    prompt = "Write a haiku about spreadsheets."
    async with AsyncClient(stack.router, stack.creds["demo_api_key"]) as c:
        first = await c.complete(prompt, max_tokens=12, temperature=0.0)
        for _ in range(40):  # the store happens off the response path
            second = await c.complete(prompt, max_tokens=12, temperature=0.0)
            if second.route.cache_hit:
                break
            stack.routes.append(second.route)
            await asyncio.sleep(0.1)
    assert not first.route.cache_hit
    assert second.route.cache_hit and second.route.cost_nano_usd == 0
    assert second.text == first.text
    assert second.route.savings_nano_usd > 0
    stack.routes += [first.route, second.route]


async def test_openai_client_through_the_http_front_door(stack: Stack) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{stack.opts.http_port}/v1", api_key=stack.creds["demo_api_key"])
    try:
        resp = await client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": EASY}], max_tokens=6
        )
    finally:
        await client.close()
    assert resp.choices[0].message.content and resp.usage is not None and resp.usage.completion_tokens > 0


async def test_stream_is_billed_with_exact_tokens(stack: Stack) -> None:
    async with AsyncClient(stack.router, stack.creds["demo_api_key"]) as c:
        chunks = [ch async for ch in c.stream(EASY, max_tokens=10, no_cache=True, model="local-small")]
    final = chunks[-1].route
    assert final is not None and final.tier == "local-small"
    text = "".join(ch.delta for ch in chunks[:-1])
    assert text and 0 < final.completion_tokens <= 10
    assert final.usage_exact and final.finish_reason in ("stop", "length")
    stack.routes.append(final)
    # The answer does not wait for the ledger to confirm the commit (journaled
    # first; docs/router.md): the charge lands right after it.
    for _ in range(50):
        async with stack.admin() as admin:
            events = [e for e in await admin.list_events(kind="charge") if e.request_id == final.request_id]
        if events:
            break
        await asyncio.sleep(0.1)
    ev = events[0]  # first attempt: bare request id
    assert (ev.prompt_tokens, ev.completion_tokens) == (final.prompt_tokens, final.completion_tokens)
    assert ev.cost.nano_usd == final.cost_nano_usd


async def test_budget_pressure_downgrades_then_denies(stack: Stack) -> None:
    # Fits one frontier hold (the frontier tier has no tokenizer, so its hold
    # counts the prompt's UTF-8 bytes plus a template allowance) but not a
    # second after the first call's charge; local calls then drain the rest.
    frontier_hold = ByteBound().prompt((Message("user", HARD),)) * 5 * NANO // 2 // 10**6 + 8 * 10 * NANO // 10**6
    secret, key_id = await stack.new_key(budget_nano=frontier_hold + NANO // 10_000)
    seen: list[str] = []
    async with AsyncClient(stack.router, secret) as c:
        for _ in range(60):
            try:
                ans = await c.complete(HARD, max_tokens=8, no_cache=True)
            except ResourceExhausted as exc:
                seen.append("denied")
                assert "budget" in exc.limit_id
                # The denial says when the budget resets (the next period) and how long to wait.
                assert exc.resets_at is not None and exc.resets_at > datetime.now(UTC)
                assert exc.retry_after_s is not None and exc.retry_after_s > 0
                break
            stack.routes.append(ans.route)
            seen.append("downgraded" if ans.route.downgraded else ans.route.tier)
    assert seen[0] == "frontier", seen
    assert "downgraded" in seen, seen
    assert seen[-1] == "denied", seen
    assert seen.index("downgraded") < seen.index("denied")
    async with stack.admin() as admin:
        (budget,) = await admin.list_budgets("key", key_id)
    assert budget.spent <= budget.hard_limit and budget.held == 0


async def test_ledger_report_shows_every_call(stack: Stack) -> None:
    wanted = {route.request_id for route in stack.routes}
    async with stack.admin() as admin:
        for _ in range(100):  # cache-hit events are recorded off the response path
            listed = await admin.list_events()
            # A fallback attempt's event carries "<request id>#<tier>".
            events = {e.request_id.split("#")[0]: e for e in listed if e.kind in ("charge", "cache_hit")}
            if wanted <= events.keys():
                break
            await asyncio.sleep(0.1)
    for route in stack.routes:
        ev = events[route.request_id]
        assert ev.cost.nano_usd == route.cost_nano_usd, route
        assert ev.counterfactual_cost.nano_usd - ev.cost.nano_usd == route.savings_nano_usd, route
        assert ev.cache_hit == route.cache_hit
    # The chargeback report, through the real CLI, adds up to the event log.
    period = datetime.now(UTC).strftime("%Y-%m")
    out = subprocess.run(
        [sys.executable, "-m", "rationer.cli.main", "report", "chargeback", "--period", period, "--by", "team",
         "--format", "json", "--ledger", stack.ledger, "--admin-token", stack.creds["admin_token"]],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    report = json.loads(out.stdout)
    billed = [e for e in listed if e.kind in ("charge", "cache_hit")]
    assert report["total"]["requests"] == len(billed)
    assert report["total"]["spend_nano_usd"] == sum(e.cost.nano_usd for e in billed)
    savings = sum(e.counterfactual_cost.nano_usd - e.cost.nano_usd for e in billed)
    assert report["total"]["savings_nano_usd"] == savings > 0


async def test_internal_services_refuse_callers_without_the_service_token(stack: Stack) -> None:
    """`rationer up` turns the trust boundary on: ledger, cache and worker answer only the router's token."""
    from services.cache.client import CacheClient
    from services.ledger.client import LedgerClient
    from services.slm_worker.client import WorkerClient

    ports = {c.name: c.address for c in stack.sup.children}
    token = stack.creds["service_token"]
    for presented in ("", "x" * len(token)):
        async with LedgerClient(stack.ledger, service_token=presented) as led:
            with pytest.raises(Unauthenticated, match="x-rationer-service-token"):
                await led.authorize(stack.creds["demo_key_id"], "local-small", prompt_tokens=10**7,
                                    max_completion_tokens=10**7)  # fmt: skip
        async with CacheClient(ports["cache"], service_token=presented) as cache:
            with pytest.raises(Unauthenticated, match="x-rationer-service-token"):
                await cache.lookup(stack.creds["org_id"], "Write a haiku about spreadsheets.")
        async with WorkerClient(ports["worker0"], service_token=presented) as worker:
            with pytest.raises(Unauthenticated, match="x-rationer-service-token"):
                await worker.list_models()
    async with WorkerClient(ports["worker0"], service_token=token) as worker:
        assert (await worker.list_models()).models  # the generated token is the one they demand


async def test_worker_killed_mid_stream_falls_back_without_leaking(stack: Stack) -> None:
    secret, key_id = await stack.new_key(budget_nano=NANO)
    worker = next(ch for ch in stack.sup.children if ch.name == "worker0")
    chunks = []
    async with AsyncClient(stack.router, secret) as c:
        async for ch in c.stream("Tell me a long story about a lighthouse.", max_tokens=200,
                                 no_cache=True, model="local-small"):  # fmt: skip
            chunks.append(ch)
            if len(chunks) == 2 and worker.proc is not None:
                worker.proc.send_signal(signal.SIGKILL)
    final = chunks[-1].route
    assert final is not None and final.tier == "frontier"
    assert "local-small" in final.fallbacks
    assert any(ch.restart for ch in chunks)
    # The answer does not wait for the ledger to confirm the commit (journaled
    # first; docs/router.md): the hold turns into the charge right after it.
    for _ in range(100):
        async with stack.admin() as admin:
            (budget,) = [b for b in await admin.list_budgets("key", key_id)]
        if budget.held == 0:
            break
        await asyncio.sleep(0.1)
    assert budget.held == 0
    assert budget.spent == final.cost_nano_usd


async def test_up_created_a_working_admin_key(stack: Stack) -> None:
    # The admin API key, not only the bootstrap token, is accepted by admin RPCs.
    async with LedgerAdminClient(stack.ledger, stack.creds["admin_api_key"]) as admin:
        keys = await admin.list_keys()
    assert any(k.key_id == stack.creds["demo_key_id"] for k in keys)


async def test_bad_input_gets_precise_status(stack: Stack) -> None:
    from rationer.api.router.v1 import router_pb2, router_pb2_grpc

    async with grpc.aio.insecure_channel(stack.router) as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        req = router_pb2.CompleteRequest()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Complete(req)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Complete(req, metadata=(("authorization", "Basic abc"),))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        good = (("authorization", f"Bearer {stack.creds['demo_api_key']}"),)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Complete(req, metadata=good)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

