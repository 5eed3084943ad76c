"""A real console stack on loopback: ledger + router (HTTP door with /console), seeded.

    async with running_console_stack(tmp_path) as st:        # in the test's loop (aiohttp tests)
        st.base_url, st.keys["viewer"].secret, await st.usage(...)

    with console_stack_thread(tmp_path) as st:               # in a thread (Selenium blocks its caller)
        st.run(st.usage(...))

Real parts: the SQLite ledger's gRPC server, the router built by
``build_deps`` with its HTTP door, frontier tiers on an instant
OpenAI-compatible upstream, all on port 0. One FixedClock drives the ledger
and the router, so "this month" is the seeded month on any date.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr

from rationer.platform.clock import Clock, FixedClock
from services.ledger.models import UsageRow
from services.router.http.app import HttpRunner, start_http
from services.router.settings import ConsoleSettings, HttpSettings, RouterSettings, TierSettings
from services.router.wiring import build_deps
from testsupport.console_seed import PRICES, Seeded, seed
from testsupport.ledger import RunningLedger, TestKey, running_ledger, settings_for
from testsupport.platform import SERVICE_TOKEN
from testsupport.upstream import instant_frontier

T = TypeVar("T")
CONSOLE_SECRET = "console-test-secret-0123456789abcdef"
START = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)  # the seeded month is March 2031


@dataclass
class ConsoleStack:
    ledger: RunningLedger
    http: HttpRunner
    clock: FixedClock
    seeded: Seeded
    loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        return self.http.base_url

    @property
    def keys(self) -> dict[str, TestKey]:
        return self.seeded.keys

    async def usage(self, bearer: str, start: str, end: str, group_by: list[str],
                    scope: tuple[str, str] | None = None) -> list[UsageRow]:  # fmt: skip
        """What the ledger's Usage says directly (ISO dates [start, end)), to compare the pages with."""
        from services.ledger.money import from_datetime

        s, e = (from_datetime(datetime.fromisoformat(d).replace(tzinfo=UTC)) for d in (start, end))
        return await self.ledger.client.as_bearer(bearer).usage(scope=scope, start_us=s, end_us=e,
                                                                group_by=group_by)  # fmt: skip

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the stack's loop (console_stack_thread) and wait for it."""
        assert self.loop is not None, "run() is for console_stack_thread"
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def _router_settings(tmp_path: Path, ledger: str, upstream: str, console: ConsoleSettings) -> RouterSettings:
    tiers = [TierSettings(name=name, kind="frontier", rank=rank, model=PRICES[name][0], base_url=upstream,
                          max_retries=0) for rank, name in enumerate(("frontier-mini", "frontier"))]  # fmt: skip
    return RouterSettings.model_validate({
        "listen": "127.0.0.1:0", "ledger_address": ledger, "cache_address": "", "worker_addresses": [],
        "tiers": [t.model_dump() for t in tiers], "service_token": SERVICE_TOKEN,
        "http": HttpSettings(enabled=True, listen="127.0.0.1:0", console=console).model_dump(),
        "settlement_journal": str(tmp_path / "router-settlements.sqlite3"),
    })  # fmt: skip


@asynccontextmanager
async def running_door(
    tmp_path: Path, ledger: str, clock: Clock, console: ConsoleSettings
) -> AsyncIterator[HttpRunner]:
    """The router (built by ``build_deps``) and its HTTP door with the console, on an instant upstream."""
    async with AsyncExitStack() as stack:
        upstream = await stack.enter_async_context(instant_frontier())
        settings = _router_settings(tmp_path, ledger, upstream, console)
        deps = await build_deps(settings, clock=clock)
        stack.push_async_callback(deps.close)
        runner = await start_http(deps.core, settings.http, registry=deps.metrics.registry, ledger=deps.ledger)
        stack.push_async_callback(runner.stop)
        yield runner


@asynccontextmanager
async def running_console_stack(tmp_path: Path, console: ConsoleSettings | None = None) -> AsyncIterator[ConsoleStack]:
    console = console or ConsoleSettings(secret=SecretStr(CONSOLE_SECRET))
    clock = FixedClock(START)
    async with running_ledger(settings_for("sqlite", tmp_path), clock=clock) as ledger:
        seeded = await seed(ledger.admin, ledger.client, clock)
        async with running_door(tmp_path, ledger.target, clock, console) as runner:
            yield ConsoleStack(ledger, runner, clock, seeded)


@contextmanager
def console_stack_thread(tmp_path: Path, console: ConsoleSettings | None = None) -> Iterator[ConsoleStack]:
    """The stack on its own loop in a daemon thread, for callers that block (Selenium, the shots command)."""
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[ConsoleStack] | None = None
    stop = asyncio.Event()

    async def main() -> None:
        async with running_console_stack(tmp_path, console) as st:
            st.loop = loop
            assert ready is not None
            ready.set_result(st)
            await stop.wait()

    def target() -> None:
        nonlocal ready
        asyncio.set_event_loop(loop)
        ready = loop.create_future()
        task = loop.create_task(main())
        task.add_done_callback(lambda t: ready.set_exception(t.exception() or RuntimeError("stack stopped"))
                               if not ready.done() else None)  # fmt: skip
        loop.run_until_complete(task)

    thread = threading.Thread(target=target, name="console-stack", daemon=True)
    thread.start()
    while ready is None:
        threading.Event().wait(0.01)
    st = asyncio.run_coroutine_threadsafe(_wait(ready), loop).result(120)
    try:
        yield st
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


async def _wait(fut: asyncio.Future[ConsoleStack]) -> ConsoleStack:
    return await fut
