"""Cookie flags by transport, and a console with no secret answering what to set."""

from __future__ import annotations

import ssl

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from pydantic import SecretStr

from rationer.platform.clock import FixedClock
from services.ledger.client import LedgerClient
from services.router.console.routes import Console, off_app
from services.router.settings import ConsoleSettings

SECRET = SecretStr("a-console-secret-of-some-length")


async def _cookie(settings: ConsoleSettings, secure_transport: bool) -> str:
    clock = FixedClock(1_900_000_000.0)
    ledger = LedgerClient("127.0.0.1:9")  # never called: only the cookie is built
    try:
        console = Console(settings, ledger, clock, lambda r: "rid")
        s = console._codec.new("rk_x", clock.now_us(), clock.now_us() + 60_000_000)
        tls = ssl.create_default_context() if secure_transport else None
        request = make_mocked_request("POST", "/console/login", sslcontext=tls)
        resp = web.Response()
        console._set_cookie(request, resp, s)
        return resp.cookies.output(header="")
    finally:
        await ledger.close()


async def test_secure_over_tls_or_behind_a_tls_proxy_only() -> None:
    plain = await _cookie(ConsoleSettings(secret=SECRET), secure_transport=False)
    assert "Secure" not in plain and "HttpOnly" in plain and "SameSite=Strict" in plain and "Max-Age=60" in plain
    assert "Secure" in await _cookie(ConsoleSettings(secret=SECRET), secure_transport=True)
    assert "Secure" in await _cookie(ConsoleSettings(secret=SECRET, behind_tls=True), secure_transport=False)


async def test_without_a_secret_the_console_says_how_to_turn_it_on() -> None:
    app = web.Application()
    app.add_subapp("/console", off_app("the console is off: set secret_file"))
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/console/overview")
        assert r.status == 503 and "secret_file" in (await r.json())["error"]["message"]
