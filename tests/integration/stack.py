"""A full router stack in-process, on loopback, for router-level tests.

    async with running_stack(tmp_path, frontier_base_url=url) as stack:
        stack.router_address, stack.http_base_url, stack.api_key, ...

Real parts throughout: a SQLite ledger, the semantic cache, optionally an
SLM worker with SmolLM2, the router
built by ``services.router.wiring.build_deps`` (real embedder and classifier)
with its gRPC server and HTTP front door, and frontier tiers pointing at a
real OpenAI-compatible server (``llama_cpp.server`` + SmolLM2; the
``frontier_base_url`` session fixture). Everything binds port 0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rationer.platform.server import start
from services.ledger.settings import LedgerSettings
from services.router.http.app import HttpRunner, start_http
from services.router.pipeline import RouterCore
from services.router.server import create_server
from services.router.settings import HttpSettings, RouterSettings, TierSettings
from services.router.wiring import build_deps
from testsupport.ledger import RunningLedger, TestKey, make_key, running_ledger, settings_for
from testsupport.platform import SERVICE_TOKEN

# nano-USD per million tokens (input, output). "frontier" is the ledger's
# seeded reference tier (gpt-4o list price); the cheaper one is priced here.
PRICES: dict[str, tuple[int, int]] = {
    "local-small": (10_000_000, 20_000_000),
    "frontier-mini": (150_000_000, 600_000_000),
    "frontier": (2_500_000_000, 10_000_000_000),
}


def frontier_tiers(base_url: str) -> list[TierSettings]:
    """Two frontier-kind tiers on the same real upstream, cheap and dear."""
    return [
        TierSettings(name="frontier-mini", kind="frontier", rank=0, model="smollm2-mini",
                     base_url=base_url, max_retries=0),
        TierSettings(name="frontier", kind="frontier", rank=1, model="smollm2-frontier",
                     base_url=base_url, max_retries=0),
    ]  # fmt: skip


@dataclass
class Stack:
    ledger: RunningLedger
    cache_address: str
    router_address: str
    http: HttpRunner
    core: RouterCore
    key: TestKey
    tiers: list[TierSettings] = field(default_factory=list)
    worker_addresses: list[str] = field(default_factory=list)

    @property
    def api_key(self) -> str:
        return self.key.secret

    @property
    def http_base_url(self) -> str:
        return self.http.base_url

    @property
    def ledger_address(self) -> str:
        return self.ledger.target

    async def new_key(self, *, org: str, allowed_tiers: Sequence[str] = (), **kw: Any) -> TestKey:
        """Another key in its own org/team/user (so its budgets are its own)."""
        return await make_key(self.ledger.admin, org=org, team=f"{org}-team", email=f"u@{org}.test",
                              allowed_tiers=allowed_tiers, **kw)  # fmt: skip


@asynccontextmanager
async def running_stack(
    tmp_path: Path,
    *,
    frontier_base_url: str,
    tiers: list[TierSettings] | None = None,
    cache: bool = True,
    worker: bool = False,
    worker_settings: Any = None,
    http: HttpSettings | None = None,
    ledger_settings: LedgerSettings | None = None,
    **router_overrides: Any,
) -> AsyncIterator[Stack]:
    """Ledger + cache (+ an SLM worker) + router (gRPC and HTTP), all started.

    ``worker=True`` starts a real worker with SmolLM2 (``worker_settings``, a
    WorkerSettings, sizes it) and, unless ``tiers`` is given, puts a
    ``local-small`` tier (rank 0) under the frontier tiers.
    """
    from testsupport.cache import running_cache
    from testsupport.slm_worker import SMOLLM2, running_worker

    if tiers is None:
        tiers = frontier_tiers(frontier_base_url)
        if worker:
            local = TierSettings(name="local-small", kind="local", rank=0, model=SMOLLM2)
            tiers = [local, *(t.model_copy(update={"rank": t.rank + 1}) for t in tiers)]
    async with AsyncExitStack() as stack:
        workers: list[str] = []
        if worker:
            workers.append((await stack.enter_async_context(running_worker(worker_settings))).target)
        ledger = await stack.enter_async_context(running_ledger(ledger_settings or settings_for("sqlite", tmp_path)))
        for tier in tiers:
            inp, out = PRICES.get(tier.name, PRICES["frontier-mini"])
            await ledger.admin.set_price(tier.name, tier.model, inp, out, is_reference=tier.name == "frontier")
        cache_address = ""
        if cache:
            cache_address = (await stack.enter_async_context(running_cache(tmp_path / "cache"))).address
        settings = RouterSettings.model_validate({
            "listen": "127.0.0.1:0", "ledger_address": ledger.target, "cache_address": cache_address,
            "worker_addresses": workers, "tiers": [t.model_dump() for t in tiers], "auth_cache_ttl_s": 0.5,
            "http": (http or HttpSettings(enabled=True, listen="127.0.0.1:0")).model_dump(),
            "settlement_journal": str(tmp_path / "router-settlements.sqlite3"),
            "service_token": SERVICE_TOKEN,
            **router_overrides,
        })  # fmt: skip
        router_deps = await build_deps(settings)
        stack.push_async_callback(router_deps.close)
        server, port = create_server(settings.listen, router_deps)
        await start(server)
        stack.push_async_callback(server.stop, None)
        runner = await start_http(router_deps.core, settings.http, registry=router_deps.metrics.registry,
                                  ledger=router_deps.ledger)
        stack.push_async_callback(runner.stop)
        key = await make_key(ledger.admin)
        yield Stack(ledger, cache_address, f"127.0.0.1:{port}", runner, router_deps.core, key, tiers, workers)
