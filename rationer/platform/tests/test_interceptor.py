"""PlatformInterceptor maps the domain-error tree to gRPC status codes and trailers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from rationer import errors
from rationer.platform.server import build_server, start

RAISES: dict[str, Exception] = {
    "invalid": errors.InvalidArgument("tokens must be >= 0"),
    "unauth": errors.Unauthenticated("unknown key"),
    "denied": errors.PermissionDenied("tier not allowed"),
    "missing": errors.NotFound("no such reservation"),
    "precondition": errors.FailedPrecondition("expired"),
    "unavailable": errors.Unavailable("db down"),
    "exhausted": errors.ResourceExhausted(
        "budget spent", limit_id="budget:team:eng:usd:monthly",
        resets_at=datetime(2026, 12, 1, tzinfo=UTC), retry_after_s=12.5,
    ),
    "bug": ZeroDivisionError("division by zero"),
    "echo": errors.NotFound(f"no tenant {'ꙮ' * 300_000!r}"),
}


def _register(server: grpc.aio.Server) -> None:
    async def handler(request: bytes, context: Any) -> bytes:
        raise RAISES[request.decode()]

    async def ok(request: bytes, context: Any) -> bytes:
        return b"pong:" + request

    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Errors", {
        "Raise": grpc.unary_unary_rpc_method_handler(handler),
        "Ok": grpc.unary_unary_rpc_method_handler(ok),
    }),))  # fmt: skip


@pytest.fixture
async def channel() -> Any:
    server, port = build_server("127.0.0.1:0", service="test", service_names=(), register=_register, credential=None)
    await start(server)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    await server.stop(None)


@pytest.mark.parametrize(
    ("name", "code"),
    [("invalid", "INVALID_ARGUMENT"), ("unauth", "UNAUTHENTICATED"), ("denied", "PERMISSION_DENIED"),
     ("missing", "NOT_FOUND"), ("precondition", "FAILED_PRECONDITION"), ("unavailable", "UNAVAILABLE"),
     ("exhausted", "RESOURCE_EXHAUSTED"), ("bug", "INTERNAL")],
)  # fmt: skip
async def test_domain_errors_map_to_status(channel: grpc.aio.Channel, name: str, code: str) -> None:
    call = channel.unary_unary("/test.Errors/Raise", None, None)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call(name.encode(), metadata=(("x-request-id", "rq-42"),))
    err = exc.value
    assert err.code() == grpc.StatusCode[code]
    if name == "bug":
        # no internals leak; the request id lets an operator find the log line
        assert "division" not in (err.details() or "") and "rq-42" in (err.details() or "")
    else:
        assert err.details() == RAISES[name].args[0]
    trailers: dict[str, Any] = dict(err.trailing_metadata() or ())  # type: ignore[arg-type]
    if name == "exhausted":
        assert trailers["x-rationer-limit"] == "budget:team:eng:usd:monthly"
        assert trailers["x-rationer-resets-at"] == "2026-12-01T00:00:00+00:00"
        assert trailers["retry-after"] == "12.500"
    else:
        assert "x-rationer-limit" not in trailers


async def test_a_huge_message_is_cut_so_the_client_still_gets_the_status(channel: grpc.aio.Channel) -> None:
    # Uncut, the trailer would exceed the client's 16 KiB metadata limit and it
    # would see RESOURCE_EXHAUSTED "Stream removed" instead of NOT_FOUND.
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await channel.unary_unary("/test.Errors/Raise", None, None)(b"echo")
    details = exc.value.details() or ""
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert details.startswith("no tenant 'ꙮꙮ") and details.endswith("characters, cut)") and len(details) <= 1000


async def test_success_passes_through(channel: grpc.aio.Channel) -> None:
    assert await channel.unary_unary("/test.Errors/Ok", None, None)(b"hi") == b"pong:hi"


def test_call_metadata_carries_request_id_and_principal_downstream() -> None:
    import structlog

    from rationer.platform.client import call_metadata

    assert call_metadata() == ()
    with structlog.contextvars.bound_contextvars(request_id="r-1", principal="acme/eng/a/k_1"):
        assert dict(call_metadata()) == {"x-request-id": "r-1", "x-rationer-principal": "acme/eng/a/k_1"}
    assert call_metadata() == ()
