"""Money invariants under generated traffic and random hang-ups (hypothesis).

Real parts on loopback: the SQLite ledger, the semantic cache, an SLM worker
with SmolLM2 (tier ``local-small``), the router's HTTP door, and two frontier
tiers on a real OpenAI-compatible server (``llama_cpp.server`` + SmolLM2).
Each generated example is a fresh key with a small hard budget and a burst of
concurrent requests: prompts over all of Unicode (astral planes, combining
marks, emoji sequences), random ``max_tokens``, stop sequences, model, stream
or not, repeats (cache hits), and a client that may hang up at any moment or
after any number of chunks. Once the traffic settles, the ledger's own
records are checked against what each client received:

- M1 spend never exceeds any hard limit;
- M2 every answer or chunk a client received is billed exactly once (one
  charge or cache-hit event per request id; an answer read in full is billed
  with the usage it reported);
- M3 no hold outlives its call: once traffic settles nothing is held;
- M4 the sum of a key's events equals each of its budgets' spent.

The normal suite runs a few derandomized examples; ``./scripts/check-long``
(``pytest --long-minutes N``) runs this for N minutes with fresh randomness
(docs/ledger.md#invariants, figures in docs/BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stack import Stack, running_stack

from services.ledger.sql.common import Op
from testsupport.ledger import settings_for

pytestmark = pytest.mark.slow

# Pieces of text a hostile or merely international user sends.
SEQUENCES = ["👩\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "👍🏽", "🇯🇵", "e\u0301\u0302", "ꙮ𓀀𝔘", "ﷺ", "Ⅻ", "\u202eabc"]
PIECES = st.one_of(
    st.text(min_size=1, max_size=12),  # any code point but lone surrogates
    st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF), min_size=1, max_size=6),
    st.text(st.characters(categories=("Mn", "Me")), min_size=1, max_size=4),
    st.sampled_from(SEQUENCES).map(lambda s: s * 3),
    st.sampled_from(["Say hi.", "What is 2+2?", "Name a colour.", "Translate 'cat' to French."]),
)
PROMPTS = st.lists(PIECES, min_size=1, max_size=6).map("".join).filter(lambda s: bool(s.strip()))
MODELS = st.sampled_from(["auto", "local-small", "frontier-mini", "frontier"])


@dataclass(frozen=True)
class Hangup:
    after_chunks: int | None = None  # streams: hang up after this many content chunks
    after_s: float | None = None  # any request: hang up after this long


@dataclass(frozen=True)
class Call:
    prompt: str
    model: str
    max_tokens: int
    stop: tuple[str, ...]
    stream: bool
    hangup: Hangup | None


HANGUPS = st.one_of(
    st.none(),
    st.builds(Hangup, after_chunks=st.integers(0, 6)),
    st.builds(Hangup, after_s=st.floats(0.0, 0.4)),
)
CALLS = st.builds(
    Call,
    prompt=PROMPTS,
    model=MODELS,
    max_tokens=st.integers(1, 8),
    stop=st.lists(st.text(min_size=1, max_size=3), max_size=2).map(tuple),
    stream=st.booleans(),
    hangup=HANGUPS,
)


@st.composite
def bursts(draw: st.DrawFn) -> tuple[int, list[Call]]:
    """A hard budget (nano-USD) and 1..5 concurrent calls, some repeating an earlier prompt."""
    calls = draw(st.lists(CALLS, min_size=1, max_size=5))
    for i in range(1, len(calls)):
        if draw(st.booleans()):  # a repeat: exact-cache candidates
            c = calls[draw(st.integers(0, i - 1))]
            calls[i] = Call(c.prompt, c.model, c.max_tokens, c.stop, calls[i].stream, calls[i].hangup)
    # From "fits nothing" to "fits several frontier calls": a frontier hold is
    # ~0.5M nano-USD at the stack's prices, a local one a few thousand.
    limit = draw(st.one_of(st.integers(1, 20_000), st.integers(20_000, 8_000_000)))
    return limit, calls


@dataclass
class Outcome:
    request_id: str
    status: int = 0
    chunks: int = 0  # content chunks received
    complete: bool = False  # read to the end (non-stream body or [DONE])
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "answered" if self.complete else "partial" if self.chunks else f"status {self.status or 'hung up'}"


# What the generated traffic got, printed with the run's figure.
SEEN: Counter[str] = Counter()


async def _send(http: httpx.AsyncClient, key: str, call: Call) -> Outcome:
    out = Outcome(request_id=f"prop-{uuid.uuid4().hex[:16]}")
    body: dict[str, Any] = {"model": call.model, "messages": [{"role": "user", "content": call.prompt}],
                            "max_tokens": call.max_tokens, "temperature": 0, "stream": call.stream}  # fmt: skip
    if call.stop:
        body["stop"] = list(call.stop)
    if call.stream:
        body["stream_options"] = {"include_usage": True}
    headers = {"Authorization": f"Bearer {key}", "x-request-id": out.request_id}
    hangup = call.hangup or Hangup()
    try:
        async with asyncio.timeout(hangup.after_s):
            req = http.build_request("POST", "/v1/chat/completions", json=body, headers=headers)
            resp = await http.send(req, stream=True)
            try:
                out.status = resp.status_code
                if resp.status_code != 200 or not call.stream:
                    data = json.loads(await resp.aread())
                    out.complete = resp.status_code == 200
                    out.chunks = int(out.complete)
                    out.usage = data.get("usage") or {}
                    return out
                await _read_stream(resp, out, hangup.after_chunks)
            finally:
                await resp.aclose()  # hangs up if the body was not read to the end
    except TimeoutError:
        pass  # the client went away
    return out


async def _read_stream(resp: httpx.Response, out: Outcome, stop_after: int | None) -> None:
    lines = resp.aiter_lines()
    async for line in lines:
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            out.complete = True
            return
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            out.usage = chunk["usage"]
        if any((c.get("delta") or {}).get("content") for c in chunk.get("choices", [])):
            out.chunks += 1
            if stop_after is not None and out.chunks >= stop_after:
                return


def _held_reservations(key_id: str) -> Op[list[tuple[Any, ...]]]:
    rows = yield ("SELECT id, request_id FROM reservations WHERE key_id = ? AND state = 'held'", (key_id,))
    return [tuple(r) for r in rows]


async def _settled(stack: Stack, key_id: str, timeout_s: float = 30.0) -> None:
    """Wait until the router has settled everything it placed for this key (journal drained too)."""
    store = stack.ledger.deps.ledger.store
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        busy = stack.core._background or len(stack.core.journal)
        if not busy and not await store.read(lambda: _held_reservations(key_id)):
            return
        await asyncio.sleep(0.1)


async def _check_invariants(stack: Stack, key_id: str, hard_limit: int, outcomes: list[Outcome]) -> None:
    await _settled(stack, key_id)
    held = await stack.ledger.deps.ledger.store.read(lambda: _held_reservations(key_id))
    assert not held, f"M3: holds left after the traffic settled: {held}"
    events = [e for e in await stack.ledger.admin.list_events() if e.key_id == key_id]
    billed = [e for e in events if e.kind in ("charge", "cache_hit")]
    (budget,) = await stack.ledger.admin.list_budgets("key", key_id)
    assert budget.spent <= hard_limit, f"M1: spent {budget.spent} > hard limit {hard_limit}"
    assert sum(e.cost.nano_usd for e in billed) == budget.spent, "M4: events do not add up to spent"
    for o in outcomes:
        # Fallback attempts bill under "<request id>#<tier>".
        mine = [e for e in billed if e.request_id == o.request_id or e.request_id.startswith(o.request_id + "#")]
        if o.chunks or o.complete:
            assert len(mine) == 1, f"M2: {o} received an answer and was billed {len(mine)} times: {mine}"
            ev = mine[0]
            assert ev.completion_tokens >= 1 or ev.cache_hit
            if o.complete and o.usage:
                assert (ev.prompt_tokens, ev.completion_tokens) == (
                    o.usage["prompt_tokens"], o.usage["completion_tokens"]
                ), f"M2: billed usage differs from the usage {o} was told"
        else:
            assert len(mine) <= 1, f"M2: {o} was billed {len(mine)} times"


# Both settlement modes: the router waits for the ledger's Commit, or (``rationer up``'s
# default, issue 17) answers once the Commit is journaled and sends it in the background.
# The third runs that default on PostgreSQL with budget escrow on (docs/ledger.md "Escrow").
@pytest.fixture(scope="module", params=[(False, False), (True, False), (True, True)],
                ids=["commit-then-answer", "answer-before-commit", "answer-before-commit-pg-escrow"])  # fmt: skip
async def stack(
    frontier_base_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Stack, asyncio.AbstractEventLoop]]:
    answer_first, escrow = request.param
    tmp = tmp_path_factory.mktemp("money-props")
    ledger = None
    if escrow:
        dsn = request.getfixturevalue("pg_schema_module").dsn
        ledger = settings_for("postgres", tmp, dsn, escrow=True, escrow_slice_max_requests=4)
    async with running_stack(tmp, frontier_base_url=frontier_base_url, worker=True, ledger_settings=ledger,
                             answer_before_commit=answer_first) as s:  # fmt: skip
        # Hypothesis drives a plain function; each example runs on the loop
        # the stack's servers live on.
        yield s, asyncio.get_running_loop()


async def run_burst(stack: Stack, hard_limit: int, calls: list[Call]) -> None:
    key = await stack.new_key(org=f"prop-{uuid.uuid4().hex[:12]}")
    await stack.ledger.admin.set_budget("key", key.key_id, unit="usd", period="lifetime", hard_limit=hard_limit)
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=120) as http:
        outcomes = await asyncio.gather(*(_send(http, key.secret, c) for c in calls))
    for o in outcomes:
        assert o.status == 0 or o.status < 500, f"a 5xx: {o}"
        # --hypothesis-show-statistics tells how much traffic was answered.
        SEEN[o.kind] += 1
    await _check_invariants(stack, key.key_id, hard_limit, list(outcomes))


def _examples(request: pytest.FixtureRequest) -> tuple[int, float | None]:
    minutes = float(request.config.getoption("--long-minutes"))
    return (10_000, minutes * 60) if minutes > 0 else (12, None)


def test_money_invariants_hold_under_generated_traffic(
    stack: tuple[Stack, asyncio.AbstractEventLoop], request: pytest.FixtureRequest
) -> None:
    examples, budget_s = _examples(request)
    running, loop = stack
    started = time.monotonic()
    tried = 0

    @settings(max_examples=examples, deadline=None, derandomize=budget_s is None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(bursts())
    def prop(burst: tuple[int, list[Call]]) -> None:
        nonlocal tried
        if budget_s is not None and time.monotonic() - started > budget_s:
            return  # the long run's time is up: the remaining examples pass trivially
        tried += 1
        loop.run_until_complete(run_burst(running, *burst))

    prop()
    # The long run's figure for docs/BENCHMARKS.md.
    print(f"\nmoney properties: {tried} generated bursts, 0 violations; requests: {dict(SEEN)}")
