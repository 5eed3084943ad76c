"""The TCP balancer against real loopback servers: round robin, a dead upstream skipped, half-close passed on."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from rationer.balancer import TcpBalancer, parse_route, parse_upstream
from rationer.errors import InvalidArgument
from rationer.platform.net import free_port


@asynccontextmanager
async def echo_server(name: str) -> AsyncIterator[str]:
    """Answers ``<name>:<everything it read until EOF>`` and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's half-close
        writer.write(f"{name}:".encode() + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def ask(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    writer.write_eof()
    answer = await reader.read()
    writer.close()
    return answer


async def test_connections_alternate_and_bytes_pass_both_ways() -> None:
    async with echo_server("a") as a, echo_server("b") as b:
        balancer = TcpBalancer([a, b])
        port = await balancer.start()
        try:
            answers = [await ask(port, b"x" * 200_000) for _ in range(4)]
        finally:
            await balancer.close()
    assert sorted(x[:2] for x in answers) == [b"a:", b"a:", b"b:", b"b:"]
    assert all(len(x) == 200_002 for x in answers)  # larger than one chunk, after a half-close
    assert balancer.served == {a: 2, b: 2}


async def test_a_dead_upstream_is_skipped() -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    async with echo_server("live") as live:
        balancer = TcpBalancer([dead, live])
        port = await balancer.start()
        try:
            answers = [await ask(port, b"hi") for _ in range(3)]
        finally:
            await balancer.close()
    assert answers == [b"live:hi"] * 3
    assert balancer.served == {live: 3}


async def test_no_upstream_closes_the_client_connection() -> None:
    balancer = TcpBalancer([f"127.0.0.1:{free_port()}"])
    port = await balancer.start()
    try:
        assert await asyncio.wait_for(ask(port, b"hi"), 10) == b""
    finally:
        await balancer.close()


@pytest.mark.parametrize("bad", ["", "nohost", "host:", ":80", "h:0", "h:70000", "h:x"])
def test_bad_upstreams_are_refused_with_the_form_to_use(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="HOST:PORT"):
        parse_upstream(bad)


def test_a_host_name_upstream_parses() -> None:
    assert parse_upstream("router:8080") == ("router", 8080)
    assert parse_upstream("[::1]:8080") == ("::1", 8080)


@pytest.mark.parametrize("bad", ["0.0.0.0:8080", "0.0.0.0:8080=", "x=router:8080", "0.0.0.0:1=router"])
def test_bad_routes_are_refused_with_the_form_to_use(bad: str) -> None:
    with pytest.raises(InvalidArgument, match=r"HOST:PORT|LISTEN=UPSTREAM"):
        parse_route(bad)


async def test_the_balance_command_serves_until_sigterm() -> None:
    port = free_port()
    async with echo_server("r") as upstream:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rationer.cli.main", "cluster", "balance", "--route", f"127.0.0.1:{port}={upstream}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            answer = b""
            for _ in range(100):  # until it listens
                try:
                    answer = await ask(port, b"hello")
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            assert answer == b"r:hello"
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
