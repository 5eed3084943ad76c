"""gRPC fuzz suite: generated requests for every RPC of router, ledger, cache and worker.

Every RPC in the protos (listed from the descriptors, so a new one is fuzzed
too) gets random bytes, truncated and bit-flipped valid messages, and
messages with random field values (tests/integration/grpc_fuzz.py), sent with
identity serializers to real servers on loopback: a ledger, the semantic
cache, an SLM worker with SmolLM2 and a router over them, all holding the
service token. Invariants, checked after every request:

* the answer is never UNKNOWN, INTERNAL or a hang (DEADLINE_EXCEEDED), and a
  failure always carries a message;
* the server is still SERVING (gRPC health) and keeps answering.

Generation stays cheap: requests that would reach a model ask for at most
3 tokens. The normal suite runs ``RATIONER_FUZZ_EXAMPLES`` (default 30)
deterministic cases per RPC; the long run is

    RATIONER_FUZZ_EXAMPLES=1000 RATIONER_FUZZ_REPORT=fuzz.json \\
        python -m pytest -p no:cacheprovider tests/integration/test_grpc_fuzz.py

and its figures are in docs/BENCHMARKS.md ("gRPC fuzz suite").
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rationer.api.cache.v1 import cache_pb2
from rationer.api.common.v1 import common_pb2
from rationer.api.ledger.v1 import ledger_pb2
from rationer.api.router.v1 import router_pb2
from rationer.api.worker.v1 import worker_pb2
from rationer.platform.interceptor import SERVICE_TOKEN_KEY
from rationer.platform.server import start
from services.router.server import create_server
from services.router.settings import RouterSettings
from services.router.wiring import build_deps
from tests.integration.grpc_fuzz import payloads, raw_call
from testsupport.cache import running_cache
from testsupport.ledger import ADMIN_TOKEN, make_key, running_ledger, settings_for
from testsupport.platform import SERVICE_TOKEN
from testsupport.slm_worker import SMOLLM2, running_worker

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("RATIONER_FUZZ_EXAMPLES", "30"))
REPORT = os.environ.get("RATIONER_FUZZ_REPORT", "")
VIOLATIONS = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED)
TIMEOUT_S = 60.0
MAX_FUZZ_TOKENS = 3
SERVICES: dict[str, list[Any]] = {
    "router": [router_pb2.DESCRIPTOR.services_by_name["RouterService"]],
    "ledger": [ledger_pb2.DESCRIPTOR.services_by_name[n] for n in ("LedgerService", "LedgerAdminService")],
    "cache": [cache_pb2.DESCRIPTOR.services_by_name["CacheService"]],
    "worker": [worker_pb2.DESCRIPTOR.services_by_name["WorkerService"]],
}
RPCS: list[tuple[str, MethodDescriptor]] = [
    (target, method) for target, services in SERVICES.items() for svc in services for method in svc.methods
]
COMMON_HINTS = {
    "role": ["user", "system", "assistant"],
    "model": ["local-small", SMOLLM2, "frontier", "auto", "gemma3-270m"],
    "tier": ["local-small", "frontier", "local-large"],
}


@dataclass
class Target:
    channel: grpc.aio.Channel
    metadata: tuple[tuple[str, str], ...]
    hints: dict[str, list[str]]
    seeds: dict[str, list[Message]]  # RPC name -> requests that succeed


@dataclass
class Fleet:
    targets: dict[str, Target]
    tally: Counter[str] = field(default_factory=Counter)
    strategies: dict[str, Any] = field(default_factory=dict)


def _cheap(msg: Message) -> None:
    """Requests that reach a model generate at most a few tokens (bounds stay fuzzed)."""
    params = getattr(msg, "params", None)
    if params is not None and 0 <= params.max_tokens <= 4096:
        params.max_tokens = 1 + params.max_tokens % MAX_FUZZ_TOKENS


def _chat(pb: Any, **fields: Any) -> Any:
    return pb(messages=[common_pb2.ChatMessage(role="user", content="Say hi.")],
              params=common_pb2.GenerationParams(max_tokens=2), **fields)  # fmt: skip


ROUTER_SEEDS = {
    "Complete": [_chat(router_pb2.CompleteRequest), _chat(router_pb2.CompleteRequest, model="local-small")],
    "CompleteStream": [_chat(router_pb2.CompleteRequest, no_cache=True)],
    "ListTiers": [router_pb2.ListTiersRequest()],
}
WORKER_SEEDS = {
    "Generate": [_chat(worker_pb2.GenerateRequest, model=SMOLLM2)],
    "GenerateStream": [_chat(worker_pb2.GenerateRequest, model="local-small")],
    "ListModels": [worker_pb2.ListModelsRequest()],
    "CountTokens": [worker_pb2.CountTokensRequest(
        model=SMOLLM2, messages=[common_pb2.ChatMessage(role="user", content="Say hi.")])],
}  # fmt: skip
CACHE_SEEDS = {
    "Lookup": [cache_pb2.LookupRequest(tenant="acme", text="How do I reset my password?")],
    "Store": [cache_pb2.StoreRequest(tenant="acme", text="How do I reset my password?", answer="Settings.")],
    "Invalidate": [cache_pb2.InvalidateRequest(tenant="acme")],
    "Stats": [cache_pb2.StatsRequest(), cache_pb2.StatsRequest(tenant="acme")],
}


async def _router(stack: AsyncExitStack, tmp: Path, worker: str, cache: str) -> tuple[str, str]:
    """A router over its own ledger (so fuzzed admin calls cannot revoke its key), the cache and the worker."""
    ledger = await stack.enter_async_context(running_ledger(settings_for("sqlite", tmp / "router-ledger")))
    settings = RouterSettings.model_validate({
        "listen": "127.0.0.1:0", "ledger_address": ledger.target, "cache_address": cache,
        "worker_addresses": [worker], "tiers": [{"name": "local-small", "kind": "local", "rank": 0,
                                                  "model": SMOLLM2}],
        "default_max_tokens": MAX_FUZZ_TOKENS, "settlement_journal": str(tmp / "journal.sqlite3"),
        "service_token": SERVICE_TOKEN,
    })  # fmt: skip
    router_deps = await build_deps(settings)
    stack.push_async_callback(router_deps.close)
    server, port = create_server(settings.listen, router_deps)
    await start(server)
    stack.push_async_callback(server.stop, None)
    key = await make_key(ledger.admin, org="fuzz-router")
    return f"127.0.0.1:{port}", key.secret


async def _ledger_target(channel: grpc.aio.Channel, admin: Any, client: Any) -> Target:
    k = await make_key(admin, org="fuzz")
    # Budgets, limits and revocations land on a second key, so the first keeps working.
    victim = await make_key(admin, org="fuzz-victim")
    reservations = [
        (await client.authorize(k.key_id, "local-small", prompt_tokens=10, max_completion_tokens=10)).reservation_id
        for _ in range(3)
    ]
    ids = [k.key_id, k.org_id, k.team_id, k.user_id]
    hints = {
        "api_key": [k.secret], "key_id": [k.key_id, victim.key_id], "org_id": [k.org_id], "team_id": [k.team_id],
        "user_id": [k.user_id], "id": ids, "reservation_id": reservations, "request_id": ["rq-1", "rq-2"],
        "project": ["web"], "kind": ["charge", "cache_hit", "release", "soft_alert"],
    }  # fmt: skip
    usage = common_pb2.Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
    scope = ledger_pb2.Scope(kind=ledger_pb2.SCOPE_KIND_KEY, id=victim.key_id)
    pb = ledger_pb2
    seeds: dict[str, list[Message]] = {
        "Authenticate": [pb.AuthenticateRequest(api_key=k.secret)],
        "GetHeadroom": [pb.GetHeadroomRequest(key_id=k.key_id)],
        "Authorize": [pb.AuthorizeRequest(key_id=k.key_id, tier="local-small", estimated_prompt_tokens=10,
                                          max_completion_tokens=10)],
        "Commit": [pb.CommitRequest(reservation_id=r, key_id=k.key_id, usage=usage) for r in reservations],
        "Release": [pb.ReleaseRequest(reservation_id=r, key_id=k.key_id) for r in reservations],
        "RecordCacheHit": [pb.RecordCacheHitRequest(key_id=k.key_id, request_id="rq-hit", tier="local-small",
                                                    usage=usage)],
        "RecordWrongHit": [pb.RecordWrongHitRequest(key_id=k.key_id, request_id="rq-hit")],
        "Usage": [pb.UsageRequest(scope=pb.Scope(kind=pb.SCOPE_KIND_ORG, id=k.org_id))],
        "ListPrices": [pb.ListPricesRequest()],
        "CreateOrg": [pb.CreateOrgRequest(name="fuzz-org")],
        "CreateTeam": [pb.CreateTeamRequest(org_id=k.org_id, name="fuzz-team")],
        "CreateUser": [pb.CreateUserRequest(team_id=k.team_id, email="f@fuzz.test")],
        "CreateKey": [pb.CreateKeyRequest(user_id=k.user_id)],
        "ListKeys": [pb.ListKeysRequest(org_id=k.org_id)],
        "RevokeKey": [pb.RevokeKeyRequest(key_id=victim.key_id)],
        "SetBudget": [pb.SetBudgetRequest(scope=scope, unit=pb.BUDGET_UNIT_USD, period=pb.BUDGET_PERIOD_MONTHLY,
                                          hard_limit=10**12)],
        "ListBudgets": [pb.ListBudgetsRequest(scope=scope)],
        "SetPrice": [pb.SetPriceRequest(tier="fuzz-tier", model="m", input_per_million=common_pb2.Money(nano_usd=1),
                                        output_per_million=common_pb2.Money(nano_usd=2))],
        "SetRateLimit": [pb.SetRateLimitRequest(limit=pb.RateLimit(scope=scope, requests_per_minute=1000))],
        "ListEvents": [pb.ListEventsRequest(kind="charge", limit=10)],
        "ListRequests": [pb.ListRequestsRequest(team_id=k.team_id, page_size=5, cache="miss")],
        "SetOrgSettings": [pb.SetOrgSettingsRequest(org_id=k.org_id, log_prompts=False)],
    }  # fmt: skip
    token = ((SERVICE_TOKEN_KEY, SERVICE_TOKEN),)
    return Target(channel, (*token, ("authorization", f"Bearer {ADMIN_TOKEN}")), hints, seeds)


@pytest.fixture(scope="module")
async def fleet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fuzz")
    token = ((SERVICE_TOKEN_KEY, SERVICE_TOKEN),)
    async with AsyncExitStack() as stack:
        worker = await stack.enter_async_context(running_worker())
        cache = await stack.enter_async_context(running_cache(tmp / "cache"))
        router, secret = await _router(stack, tmp, worker.target, cache.address)
        ledger = await stack.enter_async_context(running_ledger(settings_for("sqlite", tmp / "ledger")))
        addresses = {"router": router, "ledger": ledger.target, "cache": cache.address, "worker": worker.target}
        channels = {name: await stack.enter_async_context(grpc.aio.insecure_channel(a))
                    for name, a in addresses.items()}  # fmt: skip
        targets = {
            "router": Target(channels["router"], (("authorization", f"Bearer {secret}"),), {}, ROUTER_SEEDS),
            "ledger": await _ledger_target(channels["ledger"], ledger.admin, ledger.client),
            "cache": Target(channels["cache"], token, {"tenant": ["acme", "fuzz-router"], "tier_class": ["local"]},
                            CACHE_SEEDS),
            "worker": Target(channels["worker"], token, {"model": [SMOLLM2, "local-small"]}, WORKER_SEEDS),
        }
        fleet = Fleet(targets)
        yield fleet
        if REPORT:
            Path(REPORT).write_text(json.dumps(dict(sorted(fleet.tally.items())), indent=2))


def _strategy(fleet: Fleet, target: str, method: MethodDescriptor) -> Any:
    key = method.full_name
    if key not in fleet.strategies:
        t = fleet.targets[target]
        hints = {**COMMON_HINTS, **t.hints}
        fleet.strategies[key] = payloads(method.input_type, hints, t.seeds.get(method.name, ()), _cheap)
    return fleet.strategies[key]


PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)
ROUTER_METADATA = st.one_of(
    st.just(()),
    st.tuples(st.sampled_from(["x-request-id", "x-rationer-project", "authorization"]), PRINTABLE).map(lambda p: (p,)),
)


async def _serving(target: Target) -> bool:
    reply = await health_pb2_grpc.HealthStub(target.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.mark.parametrize(("target", "method"), RPCS, ids=[f"{t}-{m.name}" for t, m in RPCS])
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(data=st.data())
async def test_no_unknown_no_internal_and_still_serving(
    fleet: Fleet, target: str, method: MethodDescriptor, data: st.DataObject
) -> None:
    t = fleet.targets[target]
    shape, payload = data.draw(_strategy(fleet, target, method), label="request")
    metadata = t.metadata
    if target == "router":
        extra = data.draw(ROUTER_METADATA, label="metadata")
        # A drawn authorization replaces the real key (exercises the auth path).
        metadata = extra if extra and extra[0][0] == "authorization" else (*metadata, *extra)
    code, details = await raw_call(t.channel, method, payload, metadata, TIMEOUT_S)
    fleet.tally[f"{target} {method.name} {code.name}"] += 1
    fleet.tally[f"shape {shape}"] += 1
    fleet.tally["cases"] += 1
    # "Stream removed": the transport answered, not the service (e.g. a status
    # message too large for the client to read).
    if code in VIOLATIONS or (code != grpc.StatusCode.OK and (not details or "Stream removed" in details)):
        fleet.tally["violations"] += 1
        pytest.fail(f"{target}.{method.name} answered {code.name} ({details!r}) to a {shape} request")
    assert await _serving(t), f"{target} is not SERVING after a {shape} {method.name} request"


def _request(pb: Any, **fields: Any) -> bytes:
    return bytes(pb(**fields).SerializeToString())


# Cases the fuzzer found (each answered INTERNAL, or a transport error the
# client could not read), kept as fixed regressions.
FOUND: list[tuple[str, str, str, bytes, grpc.StatusCode]] = [
    ("ledger", "LedgerService", "Usage", _request(
        ledger_pb2.UsageRequest, period=common_pb2.TimeRange(end=Timestamp(seconds=2**62))),
     grpc.StatusCode.INVALID_ARGUMENT),  # SQLite integer overflow
    ("ledger", "LedgerAdminService", "ListEvents", _request(
        ledger_pb2.ListEventsRequest, period=common_pb2.TimeRange(start=Timestamp(seconds=-(2**62)))),
     grpc.StatusCode.INVALID_ARGUMENT),
    ("ledger", "LedgerAdminService", "CreateKey", _request(
        ledger_pb2.CreateKeyRequest, user_id="fuzz/eng/alice@acme.com", ttl=Duration(seconds=2**63 - 2)),
     grpc.StatusCode.INVALID_ARGUMENT),  # an expiry past int64 microseconds
    ("cache", "CacheService", "Stats", _request(cache_pb2.StatsRequest, tenant="z" * 300_000),
     grpc.StatusCode.INVALID_ARGUMENT),  # the echoed tenant overflowed the client's trailer limit
    ("cache", "CacheService", "Invalidate", _request(
        cache_pb2.InvalidateRequest, tenant="acme", entry_id="ꙮ" * 100_000), grpc.StatusCode.NOT_FOUND),
]


@pytest.mark.parametrize(("target", "service", "rpc", "payload", "expected"), FOUND,
                         ids=[f"{t}-{r}" for t, _, r, _, _ in FOUND])  # fmt: skip
async def test_cases_the_fuzzer_found(
    fleet: Fleet, target: str, service: str, rpc: str, payload: bytes, expected: grpc.StatusCode
) -> None:
    t = fleet.targets[target]
    method = next(m for s in SERVICES[target] for m in s.methods if s.name == service and m.name == rpc)
    code, details = await raw_call(t.channel, method, payload, t.metadata, TIMEOUT_S)
    assert code == expected and details and "Stream removed" not in details, (code, details[:300])
    assert len(details) <= 1000
