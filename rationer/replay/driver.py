"""The replay driver: sends a trace's requests to a router over its public gRPC API.

Requests leave at their trace offset divided by ``speed`` (or as fast as the
concurrency limit allows with ``speed=None``), at most ``concurrency`` in
flight, each with its user's key, its project tag and a deterministic
``x-request-id`` (``<run id>-<line index>``) so the ledger's events can be
matched to trace lines. One ``Record`` per line, whatever happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

from rationer.client import Answer, AsyncClient
from rationer.errors import RationerError, ResourceExhausted
from rationer.platform.client import channel_options
from rationer.replay.provision import KeyBook
from rationer.replay.trace import TraceLine

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]


@dataclass(frozen=True)
class DriveOptions:
    address: str
    speed: float | None = None  # trace seconds per wall second; None = as fast as possible
    concurrency: int = 8
    timeout_s: float = 300.0
    run_id: str = "replay"
    # Pause of each of the ``concurrency`` slots after an answer before it sends again. At
    # concurrency 1 it lets the router's off-path cache store and commit land first, so which
    # repeat hits, and the budget each call sees, are the trace's own (a determinism setting).
    think_s: float = 0.0


@dataclass
class Record:
    i: int
    id: str
    ts: float
    org: str
    team: str
    user: str
    project: str
    group: str
    labels: dict[str, Any]
    prompt_chars: int
    max_tokens: int
    request_id: str
    status: str = "error"  # ok | denied | error
    error: str = ""
    limit_id: str = ""
    sent_s: float = 0.0  # wall seconds after the replay started
    lag_s: float = 0.0  # how late it left against its schedule
    latency_ms: float = 0.0
    tier: str = ""
    model: str = ""
    complexity: float = 0.0
    cache_hit: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: int = 0
    savings: int = 0
    downgraded: bool = False
    fallbacks: list[str] = field(default_factory=list)
    budget_remaining_fraction: float = 1.0
    gateway_overhead_ms: float = 0.0
    model_ms: float = 0.0
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DriveResult:
    records: list[Record]
    wall_s: float
    tiers: dict[str, dict[str, Any]]

    @property
    def served_rps(self) -> float:
        return sum(r.status != "error" for r in self.records) / self.wall_s if self.wall_s > 0 else 0.0


def _record(i: int, line: TraceLine, run_id: str) -> Record:
    return Record(
        i=i, id=line.id, ts=line.ts, org=line.org, team=line.team, user=line.user, project=line.project,
        group=line.group, labels=line.labels, prompt_chars=line.prompt_chars, max_tokens=line.max_tokens,
        request_id=f"{run_id}-{i:06d}",
    )  # fmt: skip


def _fill(rec: Record, answer: Answer) -> None:
    r = answer.route
    rec.status, rec.text = "ok", answer.text
    rec.tier, rec.model, rec.complexity, rec.cache_hit = r.tier, r.model, r.complexity, r.cache_hit
    rec.prompt_tokens, rec.completion_tokens = r.prompt_tokens, r.completion_tokens
    rec.cost, rec.savings, rec.downgraded = r.cost_nano_usd, r.savings_nano_usd, r.downgraded
    rec.fallbacks, rec.budget_remaining_fraction = list(r.fallbacks), r.budget_remaining_fraction
    rec.gateway_overhead_ms, rec.model_ms = r.gateway_overhead_ms, r.model_ms


class Driver:
    def __init__(self, opts: DriveOptions, book: KeyBook, on_done: Callable[[Record], None] | None = None,
                 on_start: Callable[[Record], None] | None = None) -> None:  # fmt: skip
        """``on_start``/``on_done``: called as each request leaves and once it has its outcome
        (the cluster test counts the requests in flight when it kills a replica)."""
        self.opts = opts
        self.book = book
        self.on_done = on_done or (lambda _r: None)
        self.on_start = on_start or (lambda _r: None)

    async def tiers(self, client: AsyncClient) -> dict[str, dict[str, Any]]:
        return {t.name: {"kind": t.kind, "rank": t.rank, "model": t.model} for t in await client.list_tiers()}

    async def _one(self, client: AsyncClient, rec: Record, line: TraceLine, t0: float) -> None:
        sent = time.perf_counter()
        rec.sent_s = sent - t0
        self.on_start(rec)
        try:
            answer = await client.complete(list(line.messages), max_tokens=line.max_tokens,
                                           temperature=line.temperature, user=line.user,
                                           request_id=rec.request_id, timeout=self.opts.timeout_s)  # fmt: skip
            _fill(rec, answer)
        except RationerError as err:
            rec.status = "denied" if isinstance(err, ResourceExhausted) else "error"
            rec.error = f"{err.code}: {err.message}"[:500]
            rec.limit_id = err.limit_id if isinstance(err, ResourceExhausted) else ""
        rec.latency_ms = (time.perf_counter() - sent) * 1000
        self.on_done(rec)

    async def run(self, lines: list[TraceLine] | tuple[TraceLine, ...]) -> DriveResult:
        opts = self.opts
        options = channel_options(opts.address, CHANNEL_OPTIONS)  # round robin over ipv4:a,b (several routers)
        async with grpc.aio.insecure_channel(opts.address, options=options) as channel:
            # One SDK client per (key, project), all on the one channel.
            clients: dict[tuple[str, str], AsyncClient] = {}

            def client_for(line: TraceLine) -> AsyncClient:
                secret = self.book.key_for(line.org, line.team, line.user).secret
                got = clients.get((secret, line.project))
                if got is None:
                    got = clients[secret, line.project] = AsyncClient(opts.address, secret, line.project,
                                                                      channel=channel)  # fmt: skip
                return got

            first = self.book.key_for(lines[0].org, lines[0].team, lines[0].user).secret
            tiers = await self.tiers(AsyncClient(opts.address, first, channel=channel))
            sem = asyncio.Semaphore(opts.concurrency)
            records = [_record(i, ln, opts.run_id) for i, ln in enumerate(lines)]
            tasks: list[asyncio.Task[None]] = []
            t0 = time.perf_counter()
            base_ts = lines[0].ts

            async def guarded(rec: Record, line: TraceLine) -> None:
                try:
                    await self._one(client_for(line), rec, line, t0)
                    if opts.think_s:
                        await asyncio.sleep(opts.think_s)
                finally:
                    sem.release()

            for rec, line in zip(records, lines, strict=True):
                due = t0 + (line.ts - base_ts) / opts.speed if opts.speed else t0
                if (delay := due - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                await sem.acquire()
                rec.lag_s = max(time.perf_counter() - due, 0.0)
                tasks.append(asyncio.create_task(guarded(rec, line)))
            await asyncio.gather(*tasks)
            wall = time.perf_counter() - t0
        return DriveResult(records, wall, tiers)
