"""A tiny round-robin TCP balancer: one listening address in front of several upstreams.

``rationer cluster up`` puts the routers' HTTP doors behind it (gRPC clients
balance per call themselves, with the ``round_robin`` policy over an
``ipv4:`` target). It balances connections, not requests: each accepted
connection goes to the next upstream that accepts a TCP connect, so a dead
upstream is skipped at once and costs the client nothing but a refused
connect on our side. Upstream host names are resolved again for every
connection, so ``router:8080`` in compose finds every replica Docker's DNS
returns.

Bytes are copied both ways until either side closes; a half-close is passed
on (HTTP/1.1 clients that shut down their write side still get the answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Sequence

import structlog

from rationer.errors import InvalidArgument

log = structlog.get_logger(__name__)
CHUNK = 64 * 1024


def parse_upstream(text: str, *, listen: bool = False) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    low = 0 if listen else 1
    if not sep or not host or not port.isdigit() or not low <= int(port) < 65536:
        raise InvalidArgument(f"upstream {text!r} is not HOST:PORT (for example 127.0.0.1:8080)")
    return host.strip("[]"), int(port)


async def _resolve(host: str, port: int) -> list[tuple[str, int]]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[tuple[str, int], None] = {}
    for *_, addr in infos:
        seen[(str(addr[0]), int(addr[1]))] = None
    return list(seen)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class TcpBalancer:
    """Round robin over ``upstreams`` (``HOST:PORT`` each); ``start`` binds, ``close`` stops."""

    def __init__(self, upstreams: Sequence[str], *, connect_timeout_s: float = 2.0) -> None:
        if not upstreams:
            raise InvalidArgument("the balancer needs at least one upstream")
        self.upstreams = [parse_upstream(u) for u in upstreams]
        self.connect_timeout_s = connect_timeout_s
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.port = 0
        self.served: dict[str, int] = {}  # upstream -> connections handed to it

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server is not None:
            # After the connections: on 3.12+ wait_closed waits for every one of them.
            await self._server.wait_closed()

    async def _candidates(self) -> list[tuple[str, int]]:
        """Every resolved upstream address, starting from this connection's turn."""
        out: list[tuple[str, int]] = []
        for host, port in self.upstreams:
            with contextlib.suppress(OSError):
                out.extend(await _resolve(host, port))
        if not out:
            return out
        k = next(self._turn) % len(out)
        return out[k:] + out[:k]

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for host, port in await self._candidates():
            try:
                conn = await asyncio.wait_for(asyncio.open_connection(host, port), self.connect_timeout_s)
            except (OSError, TimeoutError):
                log.warning("upstream refused; trying the next", upstream=f"{host}:{port}")
                continue
            key = f"{host}:{port}"
            self.served[key] = self.served.get(key, 0) + 1
            return conn
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            upstream = await self._connect()
            if upstream is None:
                log.error("no upstream accepted the connection", upstreams=len(self.upstreams))
                return
            up_reader, up_writer = upstream
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


def parse_route(text: str) -> tuple[tuple[str, int], list[str]]:
    """``LISTEN=UP1,UP2`` -> ((listen host, port), [upstreams])."""
    listen, sep, ups = text.partition("=")
    upstreams = [u for u in ups.split(",") if u.strip()]
    if not sep or not upstreams:
        raise InvalidArgument(f"route {text!r} is not LISTEN=UPSTREAM[,UPSTREAM...] (e.g. 0.0.0.0:8080=router:8080)")
    for u in upstreams:
        parse_upstream(u)
    return parse_upstream(listen, listen=True), upstreams


async def run_balancers(routes: Sequence[str]) -> None:
    """One balancer per route until SIGINT or SIGTERM (``rationer cluster balance``)."""
    import signal

    parsed = [parse_route(r) for r in routes]
    if not parsed:
        raise InvalidArgument("pass at least one --route LISTEN=UPSTREAM")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    balancers = [TcpBalancer(ups) for _, ups in parsed]
    try:
        for b, ((host, port), ups) in zip(balancers, parsed, strict=True):
            await b.start(host, port)
            log.info("balancing", listen=f"{host}:{b.port}", upstreams=ups)
        await stop.wait()
    finally:
        for b in balancers:
            await b.close()
