"""`rationer bench console-http`: p95 of each console page's data call over HTTP, on N seeded events.

Seeds N synthetic usage events (services.ledger.seed) into a real SQLite
ledger, starts the router's HTTP door with the console, signs in with an
admin key and times ``GET /console/api/<page>`` for every Overview and
Chargeback view over the 30 days seeded. The baseline, measured in the same
run: the ledger ``Usage`` RPC(s) that view makes, called directly as the same
key, so the ratio is what the console layer adds. Target: every page's p95
<= 300 ms at 1,000,000 events on the 2-core box.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from bench.ledger_console import p95
from rationer.platform.clock import SYSTEM_CLOCK
from services.ledger import seed as seeding
from services.ledger.client import LedgerClient
from services.router.settings import ConsoleSettings
from testsupport.console_stack import CONSOLE_SECRET, running_door
from testsupport.ledger import running_ledger, settings_for

TARGET_MS = 300.0
# view -> (API path and query, the Usage group_by its handler asks for)
VIEWS: dict[str, tuple[str, list[str]]] = {
    "overview": ("overview", ["day", "tier"]),
    **{f"chargeback_by_{by}": (f"chargeback?by={by}", [by])
       for by in ("org", "team", "user", "key", "project", "model")},
}  # fmt: skip


async def _time(fn: Callable[[], Awaitable[object]], repeats: int) -> dict[str, float]:
    await fn()  # warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(p95(times), 1)}


async def _views(base: str, key: str, ledger: LedgerClient, first: str, last: str,
                 span: tuple[int, int], repeats: int) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {}
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        r = await http.post(f"{base}/console/login", json={"api_key": key})
        assert r.status == 200, await r.text()
        for name, (path, group_by) in VIEWS.items():
            url = f"{base}/console/api/{path}{'&' if '?' in path else '?'}from={first}&to={last}"

            async def page(url: str = url) -> object:
                async with http.get(url) as resp:
                    assert resp.status == 200, await resp.text()
                    return await resp.read()

            async def rpc(group_by: list[str] = group_by) -> object:
                return await ledger.usage(start_us=span[0], end_us=span[1], group_by=group_by)

            p, b = await _time(page, repeats), await _time(rpc, repeats)
            out[name] = {"page": p, "usage_rpc": b, "ratio_p95": round(p["p95_ms"] / max(b["p95_ms"], 0.1), 2)}
    return out


async def run(count: int, repeats: int, keys: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="rationer-bench-console-http-"))
    now = datetime.now(UTC)
    first, last = (now - timedelta(days=30)).date(), now.date()
    day0 = datetime(first.year, first.month, first.day, tzinfo=UTC)
    span = (int(day0.timestamp() * 1e6), int((day0 + timedelta(days=31)).timestamp() * 1e6))
    async with running_ledger(settings_for("sqlite", tmp)) as led:
        t0 = time.perf_counter()
        spec = seeding.SeedSpec(count, int(now.timestamp() * 1e6), days=30, keys=keys, seed=1)
        await asyncio.to_thread(seeding.seed_sqlite, tmp / "ledger.sqlite3", spec)
        seed_s = time.perf_counter() - t0
        org = await led.admin.create_org("bench")
        team = await led.admin.create_team(org.id, "ops")
        admin = await led.admin.create_key(team_id=team.id, service_account="bench", role="admin")
        console = ConsoleSettings(secret=SecretStr(CONSOLE_SECRET))
        async with running_door(tmp, led.target, SYSTEM_CLOCK, console) as door:
            views = await _views(door.base_url, admin.secret, led.client.as_bearer(admin.secret),
                                 first.isoformat(), last.isoformat(), span, repeats)  # fmt: skip
    worst = max(v["page"]["p95_ms"] for v in views.values())
    return {"backend": "sqlite", "events": count, "keys": keys, "seed_s": round(seed_s, 1),
            "range": f"{first}..{last}", "views": views, "worst_page_p95_ms": worst, "target_ms": TARGET_MS,
            "meets_target": worst <= TARGET_MS}  # fmt: skip


def main(json_out: bool, count: int, repeats: int, keys: int = 50) -> None:
    r = asyncio.run(run(count, repeats, keys))
    if json_out:
        print(json.dumps(r))
        return
    print(f"{r['events']:,} events ({r['keys']} keys, SQLite, seeded in {r['seed_s']}s), range {r['range']}: "
          f"worst page p95 {r['worst_page_p95_ms']} ms (target <= {TARGET_MS:.0f} ms: "
          f"{'met' if r['meets_target'] else 'NOT met'})")  # fmt: skip
    for name, v in r["views"].items():
        print(f"  {name:22} page p50 {v['page']['p50_ms']:7.1f} p95 {v['page']['p95_ms']:7.1f} ms   "
              f"Usage RPC p95 {v['usage_rpc']['p95_ms']:7.1f} ms   ratio {v['ratio_p95']}")  # fmt: skip
