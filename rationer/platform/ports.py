"""Is a TCP port free? Used to name a busy port instead of a bind traceback."""

from __future__ import annotations

import socket

from rationer.errors import FailedPrecondition


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port) if port.isdigit() else -1


def port_in_use(host: str, port: int) -> bool:
    """True when binding ``host:port`` fails because something holds it."""
    if port <= 0:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR as the servers set it: a port in TIME_WAIT is not "in use".
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def port_busy_error(port: int, what: str, fix: str) -> FailedPrecondition:
    return FailedPrecondition(f"port {port} in use ({what}); {fix}")
