"""The interceptor's two gates: the service credential and request bytes that do not parse.

A synthetic service on the real platform server (``build_server``) with one
protected RPC, one open RPC and the standard health service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from rationer.api.ledger.v1 import ledger_pb2 as pb
from rationer.errors import InvalidArgument
from rationer.platform.client import internal_channel
from rationer.platform.interceptor import SERVICE_TOKEN_KEY, ServiceCredential
from rationer.platform.server import build_server, start
from rationer.platform.settings import ServiceSettings, load_settings, resolve_service_token, with_service_token

TOKEN = "platform-test-token-0123456789"
SERVICE = "test.Guarded"


def _register(server: grpc.aio.Server) -> None:
    async def release(request: pb.ReleaseRequest, context: Any) -> pb.ReleaseResponse:
        return pb.ReleaseResponse(released=request.reservation_id == "r_1")

    async def stream(request: pb.ReleaseRequest, context: Any) -> Any:
        yield pb.ReleaseResponse(released=True)

    handler = grpc.unary_unary_rpc_method_handler
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
        "Release": handler(release, pb.ReleaseRequest.FromString, pb.ReleaseResponse.SerializeToString),
        "Open": handler(release, pb.ReleaseRequest.FromString, pb.ReleaseResponse.SerializeToString),
        "Stream": grpc.unary_stream_rpc_method_handler(
            stream, pb.ReleaseRequest.FromString, pb.ReleaseResponse.SerializeToString),
    }),))  # fmt: skip


@pytest.fixture
async def target() -> Any:
    credential = ServiceCredential(TOKEN, open_methods=(f"/{SERVICE}/Open",))
    server, port = build_server("127.0.0.1:0", service="test", service_names=(SERVICE,), register=_register,
                                credential=credential)  # fmt: skip
    await start(server)
    yield f"127.0.0.1:{port}"
    await server.stop(None)


async def _code(channel: grpc.aio.Channel, method: str, payload: bytes) -> tuple[grpc.StatusCode, str]:
    path = f"/{SERVICE}/{method}"
    try:
        if method == "Stream":
            async for _ in channel.unary_stream(path)(payload, timeout=10):  # type: ignore[call-arg]
                pass
        else:
            await channel.unary_unary(path)(payload, timeout=10)  # type: ignore[call-arg]
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


GOOD = pb.ReleaseRequest(reservation_id="r_1").SerializeToString()


@pytest.mark.parametrize("method", ["Release", "Stream"])
async def test_missing_or_wrong_token_is_unauthenticated(target: str, method: str) -> None:
    async with grpc.aio.insecure_channel(target) as bare:
        code, details = await _code(bare, method, GOOD)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert method in details and SERVICE_TOKEN_KEY in details and "RATIONER_SERVICE_TOKEN" in details
    for wrong in ("x" * len(TOKEN), TOKEN[:-1], TOKEN + "x"):
        async with internal_channel(target, wrong) as ch:
            code, details = await _code(ch, method, GOOD)
        assert code == grpc.StatusCode.UNAUTHENTICATED and "is not this service's" in details
        assert wrong not in details  # the message never echoes what was presented
    async with internal_channel(target, TOKEN) as ch:
        assert (await _code(ch, method, GOOD))[0] == grpc.StatusCode.OK


async def test_open_methods_and_health_need_no_token(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as bare:
        assert (await _code(bare, "Open", GOOD))[0] == grpc.StatusCode.OK
        reply = await health_pb2_grpc.HealthStub(bare).Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("method", ["Release", "Open", "Stream"])
@pytest.mark.parametrize("payload", [b"\x0a\x02\xff\xfe", b"\x0a\x05ab", b"\xff\xff\xff\xff"])
async def test_undecodable_bytes_are_invalid_argument_naming_the_rpc(
    target: str, method: str, payload: bytes
) -> None:
    async with internal_channel(target, TOKEN) as ch:
        code, details = await _code(ch, method, payload)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith(f"{method}: the request is not a valid ReleaseRequest")
        assert (await _code(ch, method, GOOD))[0] == grpc.StatusCode.OK  # the server is unharmed


async def test_the_credential_is_checked_before_the_bytes(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as bare:
        assert (await _code(bare, "Release", b"\xff\xff"))[0] == grpc.StatusCode.UNAUTHENTICATED


def test_an_empty_credential_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="non-empty"):
        ServiceCredential("")


def test_settings_resolve_the_token_from_one_variable_or_a_file(tmp_path: Path) -> None:
    s = load_settings(ServiceSettings, "ledger", environ={"RATIONER_SERVICE_TOKEN": "1234567890123456"})
    assert resolve_service_token(s, "ledger") == "1234567890123456"  # digits stay a string
    assert "1234567890123456" not in repr(s)  # a SecretStr: never in a repr or a log line
    section = load_settings(ServiceSettings, "ledger", environ={
        "RATIONER_SERVICE_TOKEN": TOKEN, "RATIONER_LEDGER__SERVICE_TOKEN": TOKEN + "-ledger"})  # fmt: skip
    assert resolve_service_token(section, "ledger") == TOKEN + "-ledger"  # the section's own wins
    path = tmp_path / "service_token"
    path.write_text(TOKEN + "\n")
    from_file = with_service_token(ServiceSettings(service_token_file=path), "cache")
    assert from_file.service_token is not None and from_file.service_token.get_secret_value() == TOKEN


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ServiceSettings(), "no service token configured; set RATIONER_SERVICE_TOKEN"),
        (ServiceSettings(service_token=SecretStr("short")), "16 to 1024 printable ASCII"),
        (ServiceSettings(service_token=SecretStr("with a space in the middle")), "without spaces"),
        (ServiceSettings(service_token_file=Path("/nonexistent/token")), "cannot read the service_token_file"),
        (ServiceSettings(service_token=SecretStr(TOKEN), service_token_file=Path("/x")), "not both"),
    ],
)
def test_a_missing_or_weak_token_is_refused_with_a_fix(settings: ServiceSettings, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        resolve_service_token(settings, "ledger")
    assert "short" not in info.value.message and "with a space" not in info.value.message
