"""No key, token or prompt text in the gateway's logs, at DEBUG, on any path.

The door is driven with one key and one distinctive prompt through every
path that logs: answers, cache hits, streams, bad bodies, undecodable
Content-Encoding, malformed HTTP carrying the key, an upstream that fails
echoing the request, and an unhandled exception whose frame holds both. The
in-process log (tests/logcheck.py) must show those paths were logged, and
contain neither the key nor the prompt; the session-end scan checks them in
every other log file too.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from logcheck import LogWindow, sensitive
from rawhttp import exchange, request
from stack import Stack, running_stack

from rationer.platform.net import free_port
from services.router.settings import TierSettings
from testsupport.upstream import instant_frontier

PROMPT = f"Describe the marmalade lighthouse {uuid.uuid4().hex[:12]} in one line"
sensitive(PROMPT)


async def echo_app_runner(port: int) -> web.AppRunner:
    """An upstream that fails with a 500 echoing the whole request, headers and body."""

    async def chat(request: web.Request) -> web.Response:
        return web.Response(status=500, text=f"upstream broke on {dict(request.headers)} {await request.text()}")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    port = free_port()
    echo = await echo_app_runner(port)
    try:
        async with instant_frontier() as base:
            tiers = [
                TierSettings(name="frontier", kind="frontier", rank=0, model="instant", base_url=base, max_retries=0),
                TierSettings(name="frontier-echo", kind="frontier", rank=1, model="echo",
                             base_url=f"http://127.0.0.1:{port}/v1", max_retries=0,
                             api_key="sk-gateway-frontier-key-0123456789"),
            ]  # fmt: skip
            # fallback_for: the echoing tier is named and must fail over (a logging path).
            async with running_stack(tmp_path_factory.mktemp("log-secrets"), frontier_base_url=base,
                                     tiers=tiers, fallback_for=["*"]) as s:  # fmt: skip
                sensitive(s.api_key)
                yield s
    finally:
        await echo.cleanup()


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "frontier", "messages": [{"role": "user", "content": PROMPT}], **extra}


async def drive_every_logging_path(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    key = stack.api_key
    auth = {"Authorization": f"Bearer {key}"}
    statuses: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=30, headers=auth) as http:
        for name in ("miss", "hit"):
            resp = await http.post("/v1/chat/completions", json=chat_body())
            statuses[name] = resp.status_code
        assert resp.headers["x-rationer-cache"] == "hit"
        statuses["stream"] = (await http.post("/v1/chat/completions", json=chat_body(stream=True,
                                                                                       no_cache=True))).status_code
        statuses["echoing upstream"] = (await http.post("/v1/chat/completions", json=chat_body(
            model="frontier-echo", no_cache=True))).status_code  # fmt: skip
        statuses["embeddings"] = (await http.post("/v1/embeddings", json={"input": [PROMPT]})).status_code
        raw = json.dumps(chat_body()).encode()
        for name, content, headers in [
            ("bad JSON", raw[:-3] + key.encode(), {}),
            ("lone surrogate", raw.replace(b"Describe", b"\\ud800 Describe"), {}),
            ("deflate garbage", raw, {"Content-Encoding": "deflate"}),
            ("deep JSON", b"[" * 900 + raw + b"]" * 900, {}),
        ]:
            resp = await http.post("/v1/chat/completions", content=content, headers=headers)
            statuses[name] = resp.status_code

        async def broken(*args: Any, **kwargs: Any) -> Any:
            prompt, secret = PROMPT, key  # in the frame: tracebacks must not print locals
            raise RuntimeError(f"bug while serving Authorization: Bearer {secret} ({len(prompt)} chars)")

        monkeypatch.setattr(stack.core, "complete", broken)
        statuses["unhandled"] = (await http.post("/v1/chat/completions", json=chat_body(no_cache=True))).status_code
        monkeypatch.undo()
    port = stack.http.port
    framing = {
        "key in a header over 8 KB": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + key.encode() + b"a" * 9000 + b"\r\n\r\n",
        "key beside a bad byte": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + key.encode() + b"\x01\r\n\r\n",
        "key in a broken request line": b"GET /v1/" + key.encode() + b" HTTP/1.1 extra\r\n\r\n",
    }
    for name, data in framing.items():
        statuses[name] = (await asyncio.to_thread(exchange, port, data)).status
    statuses["raw bytes in Authorization"] = (await asyncio.to_thread(
        exchange, port, request("POST", "/v1/chat/completions", raw,
                                headers=b"Authorization: Bearer " + key.encode() + b"\xff\r\n"))).status  # fmt: skip
    return statuses


async def test_no_key_or_prompt_in_the_log_at_debug(
    stack: Stack, service_log: LogWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    statuses = await drive_every_logging_path(stack, monkeypatch)
    assert statuses["miss"] == statuses["hit"] == statuses["stream"] == statuses["embeddings"] == 200
    # The echoing tier fails; the call falls back to the other one.
    assert statuses["unhandled"] == 500 and statuses["echoing upstream"] == 200
    assert all(400 <= statuses[n] < 500 for n in ("bad JSON", "lone surrogate", "deflate garbage", "deep JSON"))
    assert statuses["raw bytes in Authorization"] == 401
    text = service_log.text()
    # The paths did log (the check below could otherwise pass on an empty log)...
    for logged in ("unhandled error in HTTP handler", "Traceback", "RuntimeError: bug while serving",
                   "tier failed", "malformed HTTP request refused", "[debug"):  # fmt: skip
        assert logged in text, f"expected {logged!r} in the log"
    # ...and nothing secret reached it.
    for secret in (stack.api_key, PROMPT, PROMPT[:24], "sk-gateway-frontier-key-0123456789"):
        assert secret not in text
    assert "locals" not in text and "Bearer [REDACTED]" in text
