"""Client-side helpers: channels to internal services, and gRPC failures
mapped back into the domain-error tree.

The inverse of the server interceptor, so a service calling another one can
handle ``ResourceExhausted`` or ``Unavailable`` without touching gRPC types,
and every call it makes carries the service token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import grpc
import structlog

from rationer import errors
from rationer.platform.interceptor import (
    LIMIT_ID_KEY,
    PRINCIPAL_KEY,
    REQUEST_ID_KEY,
    RESETS_AT_KEY,
    RETRY_AFTER_KEY,
    SERVICE_TOKEN_KEY,
)
from rationer.platform.tracing import client_interceptors


def _with_token(details: grpc.aio.ClientCallDetails, pair: tuple[str, str]) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()), pair)
    return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                      details.wait_for_ready)  # fmt: skip


# One class per call kind: grpc.aio files each interceptor under the first
# kind it is an instance of. Their continuations are coroutines that return
# the call (the stubs type them as returning the call directly).
class _UnaryToken(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, pair: tuple[str, str]) -> None:
        self._pair = pair

    async def intercept_unary_unary(
        self, continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails, request: Any,
    ) -> Any:  # fmt: skip
        return await continuation(_with_token(client_call_details, self._pair), request)


class _StreamToken(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, pair: tuple[str, str]) -> None:
        self._pair = pair

    async def intercept_unary_stream(
        self, continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails, request: Any,
    ) -> Any:  # fmt: skip
        return await continuation(_with_token(client_call_details, self._pair), request)


# Per-call round robin over every address a target resolves to. gRPC's
# default policy (pick_first) would send every call of a channel to one
# replica, so a second ledger or router behind one target would sit idle.
ROUND_ROBIN = ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]}))
MULTI_ADDRESS_SCHEMES = ("ipv4:", "ipv6:", "dns:")


def channel_options(address: str, options: Sequence[tuple[str, Any]] | None = None) -> list[tuple[str, Any]]:
    """``options`` plus round robin when ``address`` may name several replicas.

    ``ipv4:127.0.0.1:7401,127.0.0.1:7411`` (a static list) and ``dns:name:port``
    (every A record) balance per call; a plain ``host:port`` keeps gRPC's
    default, one connection.
    """
    out = list(options or ())
    if address.startswith(MULTI_ADDRESS_SCHEMES) and not any(k == ROUND_ROBIN[0] for k, _ in out):
        out.append(ROUND_ROBIN)
    return out


def internal_channel(
    address: str, service_token: str, *, options: Sequence[tuple[str, Any]] | None = None
) -> grpc.aio.Channel:
    """A channel to the ledger, cache or a worker that presents ``service_token``
    on every call ("" sends none: only the open RPCs, health and reflection
    will answer)."""
    # On the channel rather than at each call site, so an RPC added later
    # cannot forget the token.
    pair = (SERVICE_TOKEN_KEY, service_token)
    interceptors: Any = [_UnaryToken(pair), _StreamToken(pair)] if service_token else []
    interceptors.extend(client_interceptors())  # trace context; a no-op while tracing is off
    return grpc.aio.insecure_channel(address, options=channel_options(address, options), interceptors=interceptors)


def call_metadata() -> tuple[tuple[str, str], ...]:
    """Request id and principal of the call being served, for a downstream call.

    Read from structlog's context (bound by the interceptor and by the router
    once it knows the principal), so every service logs the same request id.
    """
    ctx = structlog.contextvars.get_contextvars()
    md: list[tuple[str, str]] = []
    if ctx.get("request_id"):
        md.append((REQUEST_ID_KEY, str(ctx["request_id"])))
    if ctx.get("principal"):
        md.append((PRINCIPAL_KEY, str(ctx["principal"])))
    return tuple(md)

_BY_CODE: dict[grpc.StatusCode, type[errors.RationerError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.CANCELLED: errors.Cancelled,
    grpc.StatusCode.INTERNAL: errors.Internal,
    grpc.StatusCode.UNKNOWN: errors.Internal,
}


def domain_error(exc: grpc.aio.AioRpcError, *, service: str = "") -> errors.RationerError:
    """Translate a failed call into the matching domain error.

    ``service`` prefixes the message ("ledger: ...") so a caller that passes
    the error on says which hop failed. Every client in the project maps
    errors through here.
    """
    code = exc.code()
    prefix = f"{service}: " if service else ""
    details = f"{prefix}{exc.details() or code.name}"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        trailers: dict[str, str] = {}
        raw: Any = exc.trailing_metadata() or ()
        for key, value in raw:
            if isinstance(value, str):
                trailers[str(key)] = value
        resets = trailers.get(RESETS_AT_KEY)
        retry = trailers.get(RETRY_AFTER_KEY)
        return errors.ResourceExhausted(
            details,
            limit_id=trailers.get(LIMIT_ID_KEY, ""),
            resets_at=datetime.fromisoformat(resets) if resets else None,
            retry_after_s=float(retry) if retry else None,
        )
    cls = _BY_CODE.get(code, errors.Internal)
    return cls(details)
