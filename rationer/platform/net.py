"""Free loopback ports, for tests, benchmarks and self-hosted runs."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port the OS reports free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_block(n: int, attempts: int = 50) -> int:
    """A base port with ``n`` consecutive free ports from it (best effort)."""
    for _ in range(attempts):
        base = free_port()
        if base + n < 65535 and all(port_is_free(p) for p in range(base, base + n)):
            return base
    raise RuntimeError("no block of free loopback ports found")
