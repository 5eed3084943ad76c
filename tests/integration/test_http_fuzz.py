"""The front door against generated requests: schemathesis, driven by the door's own /openapi.json.

Every operation of the published document gets positive cases (what the
document allows), negative ones (what it forbids: wrong types, out of
range, missing fields, bad auth) and hostile ones (a valid body with one
leaf given a lone surrogate, a NUL, an int64 overflow or 1,000 levels of
nesting). Invariants, per response: no 5xx; the
status is one the document lists; the body matches its schema (the error
shape included); a request the document forbids is refused with a 4xx;
every response arrives (no hang past the body timeout). Afterwards the
stack is healthy: /ready is 200 and a plain request is answered.

The normal suite runs a small deterministic sample. The long run is

    RATIONER_FUZZ_MINUTES=3 pytest -m fuzz tests/integration/test_http_fuzz.py -s

(random seeds, every operation in turn until the time is up); its figures
are in docs/BENCHMARKS.md. The raw-socket cases are in test_http_raw.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from addresses import assert_no_internal_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR
from stack import Stack, running_stack

from services.router.anthropic.openapi import full_document
from services.router.http.openapi import openapi_document
from services.router.settings import HttpSettings, TierSettings
from testsupport.upstream import instant_frontier

BODY_TIMEOUT_S = 2.0
# A liveness bound per request (the instant upstream answers in milliseconds).
CALL_TIMEOUT_S = 30.0
FAST_EXAMPLES = 25  # per operation and mode, in the normal suite
# The document carries the router's limits; generating strings up to the
# default 64 Ki-character prompt cap costs hypothesis seconds per case.
MAX_PROMPT_CHARS = 2000
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]  # fmt: skip
# What counts as refusing a forbidden request: schemathesis' list plus 408
# (body timeout) and 413 (body over max_body_bytes), which the door uses.
CONFIG = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": [
    "400", "401", "403", "404", "405", "406", "408", "409", "413", "415", "422", "428", "429", "5XX"]}}})


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with instant_frontier() as base:
        tiers = [TierSettings(name="frontier", kind="frontier", rank=0, model="instant", base_url=base,
                              max_retries=0)]  # fmt: skip
        http = HttpSettings(enabled=True, listen="127.0.0.1:0", body_timeout_s=BODY_TIMEOUT_S)
        async with running_stack(tmp_path_factory.mktemp("http-fuzz"), frontier_base_url=base, tiers=tiers,
                                 http=http, max_prompt_chars=MAX_PROMPT_CHARS) as s:  # fmt: skip
            yield s


async def served_document(stack: Stack) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.http_base_url) as http:
        resp = await http.get("/openapi.json")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = resp.json()
    return doc


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


async def test_openapi_document_is_valid_and_matches_the_door(stack: Stack) -> None:
    doc = await served_document(stack)
    assert list(OPENAPI_31_VALIDATOR.iter_errors(doc)) == []
    schemas = doc["components"]["schemas"]
    assert {r.removeprefix("#/components/schemas/") for r in refs(doc)} <= set(schemas)
    # Exactly the routes the door serves, with this door's limits filled in.
    app = stack.http.door.application()
    served = {r.canonical.replace("{model:.+}", "{model}") for r in app.router.resources()}
    # The FinOps console (/console, docs/console.md) is a signed-in web page with its own
    # JSON routes, not part of the OpenAI-compatible API this document describes.
    served = {p for p in served if p != "/console" and not p.startswith("/console/")}
    assert set(doc["paths"]) == served
    assert doc == full_document(stack.core.limits, stack.http.door.settings)
    chat = schemas["ChatRequest"]["properties"]
    assert chat["messages"]["maxItems"] == stack.core.limits.max_messages
    assert chat["messages"]["items"]["properties"]["content"]["anyOf"][0]["maxLength"] == MAX_PROMPT_CHARS
    assert chat["max_completion_tokens"]["anyOf"][0]["maximum"] == stack.core.limits.max_tokens_cap
    emb = schemas["EmbeddingsRequest"]["properties"]["input"]["anyOf"][1]
    assert emb["maxItems"] == stack.http.door.settings.max_embedding_inputs


def test_the_validator_does_find_a_broken_document() -> None:
    from services.router.types import RequestLimits

    doc = openapi_document(RequestLimits(), HttpSettings())
    doc["paths"]["/v1/models"]["get"]["responses"] = "none"
    doc["openapi"] = 3
    assert len(list(OPENAPI_31_VALIDATOR.iter_errors(doc))) >= 2


# What JSON can carry but no encoder downstream can (issue 12 found each as a
# 500): hypothesis' own text never holds lone surrogates, and the document's
# bounds keep generated numbers in range, so these are spliced in by hand.
HOSTILE_TEXT = ["\ud800", "a\udfffb", "\udc00\ud800", "\x00", "\u202e\u0301", "\U0001f600\u200d"]
HOSTILE_NUMBERS: list[Any] = [2**63, -(2**63) - 1, 10**40, 1e308, -0.0, True]


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaves(v, (*path, i))]
    return [path]


def _spliced(body: Any, pick: int, text: str, number: Any, depth: int) -> Any:
    out = copy.deepcopy(body)
    leaves = _leaves(out)
    if not leaves or not leaves[0]:
        return out
    *parents, last = leaves[pick % len(leaves)]
    node = out
    for key in parents:
        node = node[key]
    value = node[last]
    if isinstance(value, str):
        node[last] = value + text
    elif depth:  # the value, nested deeper than the door allows
        for _ in range(depth):
            value = [value]
        node[last] = value
    else:
        node[last] = number
    return out


def hostile(case: Any) -> Any:
    """A valid case with one leaf of its JSON body made hostile (sent by ``Run.call_hostile``)."""
    return st.tuples(st.integers(0, 10**6), st.sampled_from(HOSTILE_TEXT), st.sampled_from(HOSTILE_NUMBERS),
                     st.sampled_from([0, 0, 40, 1000])).map(
        lambda t: (setattr(case, "body", _spliced(case.body, *t)), case)[1])  # fmt: skip


@dataclass
class Run:
    """What one fuzz run tried."""

    base_url: str
    api_key: str
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)

    def call(self, case: Any) -> None:
        self.cases += 1
        resp = case.call(base_url=self.base_url, headers={"Authorization": f"Bearer {self.api_key}"},
                         timeout=CALL_TIMEOUT_S)  # fmt: skip
        self.statuses[resp.status_code] += 1
        case.validate_response(resp, checks=CHECKS)
        assert_no_internal_address(resp.status_code, resp.text)

    def call_hostile(self, case: Any) -> None:
        """Sent here, not by schemathesis: it cannot encode a lone surrogate (json.dumps escapes it)."""
        self.cases += 1
        headers = {**(case.headers or {}), "Authorization": f"Bearer {self.api_key}",
                   "Content-Type": "application/json"}  # fmt: skip
        resp = httpx.request(case.method, self.base_url + case.formatted_path, headers=headers,
                             content=json.dumps(case.body).encode(), timeout=CALL_TIMEOUT_S)  # fmt: skip
        self.statuses[resp.status_code] += 1
        assert resp.status_code < 500, f"{resp.status_code} for {json.dumps(case.body)[:500]}: {resp.text[:300]}"
        documented = case.operation.definition.raw["responses"]
        assert str(resp.status_code) in documented, f"{resp.status_code} is not documented: {resp.text[:300]}"
        if resp.status_code >= 400 and case.formatted_path.startswith("/v1/messages"):
            body = resp.json()  # Anthropic's error shape on the Messages door
            assert body["type"] == "error" and set(body["error"]) == {"message", "type"}
        elif resp.status_code >= 400:
            assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
        assert_no_internal_address(resp.status_code, resp.text)


def fuzz(run: Run, doc: dict[str, Any], *, examples: int, derandomize: bool) -> None:
    """Every operation, positive, negative and (with a body) hostile; raises at the first violation (shrunk)."""
    schema = schemathesis.openapi.from_dict(doc, config=CONFIG)
    for methods in schema.values():
        for operation in methods.values():
            plans = [(operation.as_strategy(generation_mode=m), run.call) for m in GenerationMode]
            if operation.body:
                valid = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
                plans.append((valid.flatmap(hostile), run.call_hostile))
            for strategy, call in plans:
                test = settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
                                suppress_health_check=list(HealthCheck))(given(case=strategy)(call))
                with contextlib.suppress(Unsatisfiable):  # nothing to negate (no parameters, no body)
                    test()


async def assert_healthy(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=CALL_TIMEOUT_S) as http:
        assert (await http.get("/ready")).status_code == 200
        ok = await http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {stack.api_key}"},
                             json={"model": "auto", "messages": [{"role": "user", "content": "hello"}]})  # fmt: skip
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]


async def test_generated_requests_get_no_5xx_and_match_the_document(stack: Stack) -> None:
    run = Run(stack.http_base_url, stack.api_key)
    await asyncio.to_thread(fuzz, run, await served_document(stack), examples=FAST_EXAMPLES, derandomize=True)
    # Both kinds were exercised: answered requests and refused ones.
    assert run.statuses[200] > 20 and sum(n for s, n in run.statuses.items() if 400 <= s < 500) > 20
    assert not [s for s in run.statuses if s >= 500]
    await assert_healthy(stack)


@pytest.mark.fuzz
async def test_long_fuzz_run(stack: Stack, request: pytest.FixtureRequest) -> None:
    if "fuzz" not in (request.config.option.markexpr or ""):
        pytest.skip("the long run: RATIONER_FUZZ_MINUTES=3 pytest -m fuzz tests/integration/test_http_fuzz.py -s")
    minutes = float(os.environ.get("RATIONER_FUZZ_MINUTES", "3"))
    run, doc = Run(stack.http_base_url, stack.api_key), await served_document(stack)
    started = time.monotonic()
    rounds = 0
    while time.monotonic() - started < minutes * 60:
        await asyncio.to_thread(fuzz, run, doc, examples=100, derandomize=False)
        rounds += 1
    await assert_healthy(stack)
    print(f"\nhttp fuzz: {run.cases} cases in {rounds} rounds over {(time.monotonic() - started) / 60:.1f} min, "
          f"0 violations; statuses {dict(sorted(run.statuses.items()))}")  # fmt: skip
