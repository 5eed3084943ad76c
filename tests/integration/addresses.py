"""What no client-facing error may contain: the gateway's internal addresses (issue 18 item 8)."""

from __future__ import annotations

INTERNAL = ("127.0.0.1", ":74")  # loopback services; the default ports are 7400-7404


def assert_no_internal_address(status: int, body: str) -> None:
    if status >= 400:
        leaked = [s for s in INTERNAL if s in body]
        assert not leaked, f"{status} body exposes {leaked}: {body[:300]}"
