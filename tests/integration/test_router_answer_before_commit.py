"""An answer returned before its Commit is acknowledged is still billed after a router crash.

The router answers as soon as the commit is journaled (billing.py,
``Settler.settle_detached``). A router process whose ledger never
acknowledges the commit answers, is killed with SIGKILL, and a new router on
the same journal replays it: the ledger ends with exactly one commit, at the
cost the answer reported.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from aiohttp import web

from rationer.platform.net import free_port
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.calls import CommitCall
from services.ledger.wiring import close_deps
from services.router.journal import SettlementJournal
from services.router.wiring import build_deps as build_router_deps
from tests.integration.test_router_settlement import _charges, _ledger, _router_settings
from testsupport.ledger import ADMIN_TOKEN, make_key
from testsupport.platform import SERVICE_TOKEN

# The first router: its ledger adapter never returns from Commit (the commit
# is not even sent), so the answer it prints was returned before any ack.
ROUTER = """
import asyncio, json, sys
from pathlib import Path
from services.router import adapters
from services.router.settings import RouterSettings
from services.router.types import CompletionRequest, GenParams, Message
from services.router.wiring import build_deps

async def never(self, call):
    await asyncio.Event().wait()

adapters.GrpcLedger.commit = never

async def main():
    settings = RouterSettings.model_validate(json.loads(sys.argv[1]))
    deps = await build_deps(settings)
    req = CompletionRequest(messages=(Message("user", "Say ok."),), params=GenParams(max_tokens=4))
    text, route = await deps.core.complete(sys.argv[2], req, request_id="crash-after-answer")
    print(json.dumps({"text": text, "pending": route.settlement_pending, "cost": route.cost_nano_usd}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def _upstream(port: int) -> web.AppRunner:
    async def chat(request: web.Request) -> web.Response:
        return web.json_response({
            "id": "x", "object": "chat.completion", "model": "slow",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22},
        })  # fmt: skip

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _answer_then_crash(settings_json: str, secret: str) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ROUTER, settings_json, secret, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
    finally:
        proc.send_signal(signal.SIGKILL)  # no drain, no shutdown: a crash
        await proc.wait()
    assert line, "the router printed no answer"
    answer: dict[str, object] = json.loads(line)
    return answer


async def test_an_answer_returned_before_its_commit_is_billed_after_a_crash(tmp_path: Path) -> None:
    ledger_port, upstream_port = free_port(), free_port()
    journal = tmp_path / "journal.sqlite3"
    upstream = await _upstream(upstream_port)
    server, deps = await _ledger(tmp_path, ledger_port)
    target = f"127.0.0.1:{ledger_port}"
    async with LedgerAdminClient(target, ADMIN_TOKEN) as admin:
        key = await make_key(admin, org="crash-after-answer")
    settings = _router_settings(target, upstream_port, journal).model_copy(update={"answer_before_commit": True})
    try:
        # The same settings as JSON: model_dump would mask the service token.
        raw = {**json.loads(settings.model_dump_json()), "service_token": SERVICE_TOKEN}
        answer = await _answer_then_crash(json.dumps(raw), key.secret)
        # Answered without waiting for the ledger, with the ledger's own figure.
        assert answer["text"] == "ok" and answer["pending"] is False and int(str(answer["cost"])) > 0
        (entry,) = SettlementJournal(journal).pending()
        assert isinstance(entry.call, CommitCall) and entry.call.completion_tokens == 2
        async with LedgerAdminClient(target, ADMIN_TOKEN) as admin:
            assert not [e for e in await admin.list_events(kind="charge")]
        second = await build_router_deps(settings)
        try:
            events = await _charges(target, "crash-after-answer")
            assert len(events) == 1 and events[0].cost.nano_usd == answer["cost"]
            assert (events[0].prompt_tokens, events[0].completion_tokens) == (20, 2)
            for _ in range(40):
                if not len(second.core.journal):
                    break
                await asyncio.sleep(0.05)
            assert not len(second.core.journal)
            await asyncio.sleep(0.5)  # a second replay, if any, would land by now
            async with LedgerAdminClient(target, ADMIN_TOKEN) as admin:
                assert len([e for e in await admin.list_events(kind="charge")]) == 1
        finally:
            await second.close()
    finally:
        await server.stop(None)  # type: ignore[attr-defined]
        await close_deps(deps)  # type: ignore[arg-type]
        await upstream.cleanup()
