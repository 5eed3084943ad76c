"""Hostile bytes at the front door, over raw sockets: each gets a precise 4xx, none a 5xx or a hang.

The cases issue 12 found returning 500 (deep JSON, an out-of-range seed, lone
surrogates, undecodable Content-Encoding, raw bytes in headers), what a
fuzzer finds next to them (NaN, wrong types), HTTP framing errors, and
clients that stall mid-request (the body timeout). Real stack: ledger,
cache, router with its HTTP door; the frontier tier is an instant local
upstream. The body timeout is 1 s here, so a stall shows in a second.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from addresses import assert_no_internal_address
from logcheck import LogWindow
from rawhttp import RawResponse, exchange, request
from stack import Stack, running_stack

from services.router.settings import HttpSettings, TierSettings
from testsupport.upstream import instant_frontier

BODY_TIMEOUT_S = 1.0
# A liveness bound, not a measurement: a connection still open this long
# after the body timeout has hung.
HANG_S = BODY_TIMEOUT_S + 9.0
HELLO = {"model": "auto", "messages": [{"role": "user", "content": "Say hello in three words."}]}
CHAT, EMB = "/v1/chat/completions", "/v1/embeddings"


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with instant_frontier() as base:
        tiers = [TierSettings(name="frontier", kind="frontier", rank=0, model="instant", base_url=base,
                              max_retries=0)]  # fmt: skip
        http = HttpSettings(enabled=True, listen="127.0.0.1:0", body_timeout_s=BODY_TIMEOUT_S)
        async with running_stack(tmp_path_factory.mktemp("http-raw"), frontier_base_url=base, tiers=tiers,
                                 http=http) as s:  # fmt: skip
            yield s


async def send(stack: Stack, data: bytes) -> RawResponse:
    resp = await asyncio.to_thread(exchange, stack.http.port, data, read_timeout_s=HANG_S)
    # No refusal names an internal address (issue 18 item 8).
    assert_no_internal_address(resp.status, resp.body.decode("utf-8", "replace"))
    return resp


def with_body(body: dict[str, object], raw_field: str, raw_value: bytes) -> bytes:
    """``body`` as JSON with ``raw_field`` set to exactly ``raw_value`` (escapes json.dumps would not write)."""
    text = json.dumps({**body, raw_field: "@@"}).encode()
    return text.replace(b'"@@"', raw_value)


SURROGATE = b'"\\ud800"'
# (name, path, body bytes, extra header lines, status, what the message says)
BODY_CASES = [
    ("deep nesting", CHAT, b"[" * 1000 + b"]" * 1000, b"", 400, "nests JSON deeper than 32"),
    ("deep in a field", CHAT, with_body(HELLO, "metadata", b"[" * 1000 + b"]" * 1000), b"", 400, "nests JSON"),
    ("seed over int64", CHAT, with_body(HELLO, "seed", b"9223372036854775808"), b"", 400, "signed 64-bit"),
    ("seed under int64", CHAT, with_body(HELLO, "seed", b"-9223372036854775809"), b"", 400, "signed 64-bit"),
    ("surrogate content", CHAT, b'{"messages":[{"role":"user","content":"\\ud800"}]}', b"", 400,
     "messages[0].content contains a lone UTF-16 surrogate"),
    ("surrogate stop", CHAT, with_body(HELLO, "stop", SURROGATE), b"", 400, "stop contains a lone"),
    ("surrogate stop list", CHAT, with_body(HELLO, "stop", b'["ok", "\\udfff"]'), b"", 400, "stop[1] contains"),
    ("surrogate field name", CHAT, with_body(HELLO, "x", b'{"\\ud800": 1}'), b"", 400, "field name"),
    ("surrogate embeddings", EMB, b'{"input":"\\ud800"}', b"", 400, "input contains a lone"),
    ("surrogate embeddings list", EMB, b'{"input":["a","\\ud800"]}', b"", 400, "input[1] contains"),
    ("NaN", CHAT, with_body(HELLO, "temperature", b"NaN"), b"", 400, "NaN"),
    ("Infinity", CHAT, with_body(HELLO, "top_p", b"-Infinity"), b"", 400, "-Infinity"),
    ("overflowing float", CHAT, with_body(HELLO, "temperature", b"1e400"), b"", 400,
     "temperature is a number too large"),
    ("huge integer", CHAT, with_body(HELLO, "max_tokens", b"9" * 5000), b"", 400, "not valid JSON"),
    ("deflate garbage", CHAT, b"garbage!!", b"Content-Encoding: deflate\r\n", 400, "not valid 'deflate' data"),
    ("gzip garbage", CHAT, b"\x1f\x8bgarbage", b"Content-Encoding: gzip\r\n", 400, "not valid 'gzip' data"),
    ("gzip garbage embeddings", EMB, b"\x1f\x8bxx", b"Content-Encoding: gzip\r\n", 400, "not valid 'gzip'"),
    ("project raw bytes", CHAT, json.dumps(HELLO).encode(), b"X-Rationer-Project: \xff\xfe\r\n", 400,
     "x-rationer-project holds bytes that are not UTF-8"),
    ("project Latin-1 bytes", CHAT, json.dumps(HELLO).encode(), b"X-Rationer-Project: caf\xe9\r\n", 400,
     "x-rationer-project holds bytes"),
    ("timeout not a number", CHAT, json.dumps(HELLO).encode(), b"x-rationer-timeout: 1e3\r\n", 400,
     "send seconds as a plain number"),
    ("n is true", CHAT, with_body(HELLO, "n", b"true"), b"", 400, "'n' must be the integer 1"),
    ("max_tokens 0 beside max_completion_tokens", CHAT, with_body({**HELLO, "max_completion_tokens": 5},
     "max_tokens", b"0"), b"", 400, "max_tokens is 0"),
    ("encoding_format false", EMB, b'{"input":"hi","encoding_format":false}', b"", 400, "encoding_format"),
    ("dimensions true", EMB, b'{"input":"hi","dimensions":true}', b"", 400, "dimensions is true"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "path", "body", "headers", "status", "needle"), BODY_CASES,
                         ids=[c[0] for c in BODY_CASES])  # fmt: skip
async def test_bad_body_or_header_is_a_precise_4xx(
    stack: Stack, name: str, path: str, body: bytes, headers: bytes, status: int, needle: str
) -> None:
    resp = await send(stack, request("POST", path, body, key=stack.api_key, headers=headers))
    assert resp.status == status, resp.body[:300]
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and resp.headers["x-request-id"]
    assert err["type"] == "invalid_request_error" and needle in err["message"], err["message"]


@pytest.mark.parametrize("auth", [b"Bearer \xff\xfe", b"Bearer rk-\xff" + b"a" * 40, b"Bearer caf\xc3\xa9",
                                  b"Bearer " + b"k" * 600])  # fmt: skip
async def test_undecodable_authorization_is_401_before_any_lookup_and_logs_nothing(
    stack: Stack, auth: bytes, service_log: LogWindow
) -> None:
    calls = []
    real = stack.core.auth.principal

    async def spy(key: str) -> object:
        calls.append(key)
        return await real(key)

    stack.core.auth.principal = spy  # type: ignore[method-assign]
    try:
        for _ in range(5):
            resp = await send(stack, request("POST", CHAT, json.dumps(HELLO).encode(),
                                             headers=b"Authorization: " + auth + b"\r\n"))  # fmt: skip
            assert resp.status == 401 and "printable ASCII" in resp.json()["error"]["message"]
    finally:
        del stack.core.auth.principal
    assert calls == []  # refused before the ledger was asked
    text = service_log.text()
    # One access-log line per refused request (issue 18, item 12), and nothing else of any size.
    access = [line for line in text.splitlines() if "status=401" in line and "error_code=UNAUTHENTICATED" in line]
    rest = "\n".join(line for line in text.splitlines() if line not in access)
    assert len(access) == 5 and "Traceback" not in text and len(rest) < 1024, text[:2000]
    assert auth.removeprefix(b"Bearer ").decode("latin-1") not in text


FRAMING_CASES = [
    ("garbage request line", b"GARBAGE\r\n\r\n"),
    ("unknown HTTP version", b"GET /v1/models HTTP/9.9\r\nHost: x\r\n\r\n"),
    ("control char in path", b"GET /v1/mo\x01dels HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("bad chunk size", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nabc\r\n0\r\n\r\n"),
    ("header over 8 KB", b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"),
    ("NUL in a header", b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
    ("control char in a header", b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Rationer-Project: a\x1bb\r\n\r\n"),
    ("DEL in Authorization", b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\x7fb\r\n\r\n"),
    ("Content-Length not a number", b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n"),
    ("two Content-Lengths", b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                            b"Content-Length: 3\r\n\r\n{}"),
    ("Content-Length and chunked", b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
    ("unsupported Content-Encoding", b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Encoding: br\r\n"
                                     b"Content-Length: 2\r\n\r\n{}"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data"), FRAMING_CASES, ids=[c[0] for c in FRAMING_CASES])
async def test_malformed_http_is_400_and_the_connection_closes(stack: Stack, name: str, data: bytes) -> None:
    resp = await send(stack, data)
    assert resp.status == 400 and not resp.timed_out


async def test_a_body_that_stalls_gets_408_and_a_closed_connection(stack: Stack) -> None:
    half = request("POST", CHAT, b'{"model": "auto", "mess', key=stack.api_key, length=200)
    resp = await send(stack, half)
    assert resp.status == 408 and not resp.timed_out
    err = resp.json()["error"]
    assert err["code"] == "body_timeout" and f"within {BODY_TIMEOUT_S:g} s" in err["message"]
    assert resp.headers["connection"] == "close"
    chunked = (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + stack.api_key.encode()
               + b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"inp")  # fmt: skip
    resp = await send(stack, chunked)
    assert resp.status == 408 and not resp.timed_out


async def test_refused_requests_and_stalled_headers_do_not_hold_the_connection(stack: Stack) -> None:
    # A refusal before the body is read (a bad key) answers at once; the
    # unread rest of the stalled body is drained for at most the body timeout.
    resp = await send(stack, request("POST", CHAT, b'{"mod', key="rk-wrong", length=500))
    assert resp.status == 401 and not resp.timed_out
    for stalled in (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthoriz", b""):
        resp = await send(stack, stalled)
        assert resp.status == 0 and not resp.timed_out  # closed without an answer


async def test_the_door_is_healthy_after_the_hostile_cases(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.http_base_url, timeout=30) as http:
        assert (await http.get("/ready")).status_code == 200
        ok = await http.post(CHAT, json=HELLO, headers={"Authorization": f"Bearer {stack.api_key}"})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]

