"""A real HTTP webhook receiver on loopback (aiohttp), for tests of budget alert delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def signed_by(self, secret: str) -> bool:
        """Verify X-Rationer-Signature the way docs/console.md tells receivers to."""
        ts = self.headers["X-Rationer-Timestamp"]
        want = "sha256=" + hmac.new(secret.encode(), f"{ts}.{self.body}".encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, self.headers["X-Rationer-Signature"])


@dataclass
class Receiver:
    base: str
    got: list[Received] = field(default_factory=list)
    # path -> HTTP statuses to answer, in order, before answering 200
    script: dict[str, list[int]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.got if r.path == path]


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    rec = Receiver("")

    async def handle(request: web.Request) -> web.StreamResponse:
        rec.got.append(Received(request.path, dict(request.headers), await request.text()))
        if request.path.startswith("/redirect"):
            raise web.HTTPFound("http://example.invalid/elsewhere")
        queue = rec.script.get(request.path) or []
        status = queue.pop(0) if queue else 200
        return web.Response(status=status, text="ok" if status == 200 else "receiver says no")

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.base = f"http://127.0.0.1:{port}"
    try:
        yield rec
    finally:
        await runner.cleanup()
