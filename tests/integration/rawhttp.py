"""Raw-socket HTTP for tests: bytes no HTTP client library would send.

``exchange`` runs in a thread (``asyncio.to_thread``) so the door, in the
test's event loop, keeps serving while the socket blocks.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RawResponse:
    status: int  # 0: the server closed without answering
    headers: dict[str, str]
    body: bytes
    seconds: float  # until the server closed the connection (or the read timed out)
    timed_out: bool

    def json(self) -> Any:
        return json.loads(self.body)


def request(method: str, path: str, body: bytes = b"", *, key: str = "", headers: bytes = b"",
            length: int | None = None) -> bytes:  # fmt: skip
    """A request with ``Connection: close``; ``headers`` are raw header lines (each ending in CRLF)."""
    auth = b"Authorization: Bearer " + key.encode() + b"\r\n" if key else b""
    size = len(body) if length is None else length
    return (f"{method} {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n".encode() + auth + headers
            + b"Content-Type: application/json\r\nContent-Length: " + str(size).encode() + b"\r\n\r\n" + body)


def exchange(port: int, data: bytes, *, read_timeout_s: float = 10.0) -> RawResponse:
    """Send ``data``, then read until the server closes (or ``read_timeout_s`` passes).

    Our side stays open and sends nothing more, so an incomplete request is a
    client that stalls mid-upload.
    """
    started = time.monotonic()
    timed_out = False
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout_s) as sock:
        sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            timed_out = True
        except ConnectionResetError:
            pass
    return parse(b"".join(chunks), time.monotonic() - started, timed_out)


def parse(raw: bytes, seconds: float, timed_out: bool) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = 0
    if lines and lines[0].startswith(b"HTTP/"):
        status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(status, headers, body, seconds, timed_out)
