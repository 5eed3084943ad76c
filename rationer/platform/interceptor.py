"""The single server interceptor shared by every service.

It binds a request id and the caller's principal into structlog's context for
the duration of each call, checks the service credential of internal
services, answers request bytes that do not parse with INVALID_ARGUMENT, maps
the typed domain-error tree (``rationer.errors``) to gRPC status codes, and
records Prometheus metrics.
"""

from __future__ import annotations

import contextlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from grpc.aio import ServicerContext
from opentelemetry.trace import Span

from rationer.errors import InvalidArgument, RationerError, ResourceExhausted, Unauthenticated
from rationer.platform import tracing
from rationer.platform.metrics import RpcMetrics, global_rpc_metrics

log = structlog.get_logger(__name__)

REQUEST_ID_KEY = "x-request-id"
# Set by the router on internal calls: "org/team/user/key". Informational only:
# services authorize from request fields the router filled from the ledger.
PRINCIPAL_KEY = "x-rationer-principal"
RETRY_AFTER_KEY = "retry-after"
LIMIT_ID_KEY = "x-rationer-limit"
RESETS_AT_KEY = "x-rationer-resets-at"
# The deployment's shared service token, sent by the router on every internal
# call. Its own key, so it never collides with `authorization: Bearer` (API
# keys and the ledger admin token).
SERVICE_TOKEN_KEY = "x-rationer-service-token"

_PASSTHROUGH_PREFIXES = ("/grpc.health.", "/grpc.reflection.")
# Status messages travel in a trailer, percent-encoded (up to 12 bytes per
# character). Clients refuse trailers past 16 KiB and, between their 8 KiB soft
# limit and that, at random; a message that echoes a huge field would make the
# client see a transport error instead. So a message is cut to 1,000
# characters and to 6,000 bytes once encoded, well under the soft limit.
MAX_MESSAGE_CHARS = 1000
MAX_MESSAGE_ENCODED = 6000


def _encoded_len(ch: str) -> int:
    return 1 if " " <= ch <= "~" and ch != "%" else 3 * len(ch.encode("utf-8", "surrogatepass"))


def _metadata(context: ServicerContext[Any, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in context.invocation_metadata() or ():
        key, value = item[0], item[1]
        if isinstance(value, str):
            out[key.lower()] = value
    return out


def _bounded(message: str) -> str:
    sizes = [_encoded_len(ch) for ch in message]
    if len(message) <= MAX_MESSAGE_CHARS and sum(sizes) <= MAX_MESSAGE_ENCODED:
        return message
    keep, used = 0, 0
    while keep < MAX_MESSAGE_CHARS - 40 and used + sizes[keep] <= MAX_MESSAGE_ENCODED - 120:
        used += sizes[keep]
        keep += 1
    return message[:keep] + f" ... ({len(message)} characters, cut)"


def _trailers(exc: RationerError) -> tuple[tuple[str, str], ...]:
    if not isinstance(exc, ResourceExhausted):
        return ()
    pairs: list[tuple[str, str]] = []
    if exc.limit_id:
        pairs.append((LIMIT_ID_KEY, exc.limit_id))
    if exc.resets_at is not None:
        pairs.append((RESETS_AT_KEY, exc.resets_at.isoformat()))
    if exc.retry_after_s is not None:
        pairs.append((RETRY_AFTER_KEY, f"{max(exc.retry_after_s, 0.0):.3f}"))
    return tuple(pairs)


@dataclass(frozen=True)
class ServiceCredential:
    """What an internal service demands of its callers.

    Every RPC needs ``token`` in the ``x-rationer-service-token`` metadata,
    except health, reflection and the full method names in ``open_methods``
    (``/pkg.Service/Method``); a new RPC is therefore protected by default.
    """

    token: str
    open_methods: Collection[str] = ()

    def __post_init__(self) -> None:
        if not self.token:
            raise InvalidArgument("a service credential needs a non-empty service token")

    def check(self, method: str, rpc: str, md: dict[str, str]) -> None:
        if method in self.open_methods:
            return
        presented = md.get(SERVICE_TOKEN_KEY)
        if not presented:
            raise Unauthenticated(
                f"{rpc}: this internal service accepts calls only from the router; send the deployment's "
                f"service token in the '{SERVICE_TOKEN_KEY}' metadata (the router's service_token, "
                "RATIONER_SERVICE_TOKEN)"
            )
        # Constant time, so response timing does not reveal a matching prefix.
        if not hmac.compare_digest(presented.encode(), self.token.encode()):
            raise Unauthenticated(
                f"{rpc}: the service token in '{SERVICE_TOKEN_KEY}' is not this service's; give the router "
                "and every internal service the same service_token (RATIONER_SERVICE_TOKEN)"
            )


class Undecodable:
    """Stands in for request bytes protobuf could not parse.

    gRPC would answer a failing deserializer with UNKNOWN; the interceptor
    turns this marker into INVALID_ARGUMENT before the servicer runs.
    """

    def __init__(self, message: str, error: Exception) -> None:
        self.message = message
        self.error = error


def lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """Wrap a request deserializer so a parse failure becomes :class:`Undecodable`."""
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    message = str(getattr(descriptor, "name", "") or "request message")

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # any failure here means the bytes are not this message
            return Undecodable(message, exc)

    return deserialize


def _decoded(rpc: str, request: Any) -> Any:
    if isinstance(request, Undecodable):
        detail = str(request.error)[:200]
        raise InvalidArgument(
            f"{rpc}: the request is not a valid {request.message} ({detail}); send a serialized "
            f"{request.message} from the published proto, with string fields in valid UTF-8"
        )
    return request


class _Call:
    """Per-call bookkeeping shared by the unary and streaming wrappers."""

    def __init__(self, service: str, method: str, context: ServicerContext[Any, Any]) -> None:
        md = _metadata(context)
        self.metadata = md
        self.full_method = method
        self.service = service
        self.method = method.rsplit("/", 1)[-1]
        self.request_id = md.get(REQUEST_ID_KEY) or uuid.uuid4().hex
        self.principal = md.get(PRINCIPAL_KEY, "")
        self.started = time.perf_counter()
        self.code = "OK"
        self.span: Span = tracing.NO_SPAN

    def admit(self, credential: ServiceCredential | None, request: Any) -> Any:
        """The request, once the caller's credential and the bytes are checked."""
        if credential is not None:
            credential.check(self.full_method, self.method, self.metadata)
        return _decoded(self.method, request)

    def bind(self) -> Any:
        log_scope = structlog.contextvars.bound_contextvars(
            request_id=self.request_id, rpc=self.method, principal=self.principal or None
        )
        if not tracing.enabled(self.service):
            return log_scope
        scope = contextlib.ExitStack()
        scope.enter_context(log_scope)
        self.span = scope.enter_context(tracing.server_span(self.service, self.full_method, self.metadata))
        return scope

    async def fail(self, context: ServicerContext[Any, Any], exc: BaseException) -> None:
        if isinstance(exc, RationerError):
            self.code = exc.code
            context.set_trailing_metadata(_trailers(exc))
            await context.abort(grpc.StatusCode[exc.code], _bounded(exc.message))
        self.code = "INTERNAL"
        log.exception("unhandled error")
        await context.abort(
            grpc.StatusCode.INTERNAL,
            f"internal error (request id {self.request_id}); the operator's logs have details",
        )

    def finish(self, metrics: RpcMetrics) -> None:
        metrics.observe(self.service, self.method, self.code, time.perf_counter() - self.started)
        tracing.set_rpc_status(self.span, self.code)


class PlatformInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Binds context, checks credentials and bytes, maps domain errors and
    records metrics for every RPC (in ``metrics``; None: the process-wide
    registry). ``credential`` None: no service token is required (the router,
    whose callers present API keys)."""

    def __init__(self, service: str, credential: ServiceCredential | None = None,
                 metrics: RpcMetrics | None = None) -> None:  # fmt: skip
        self._service = service
        self._credential = credential
        self._metrics = metrics if metrics is not None else global_rpc_metrics()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],  # type: ignore[type-arg]
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(_PASSTHROUGH_PREFIXES):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),
                request_deserializer=lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler

    def _wrap_unary(self, method: str, behavior: Any) -> Any:
        service, credential, metrics = self._service, self._credential, self._metrics

        async def wrapper(request: Any, context: ServicerContext[Any, Any]) -> Any:
            call = _Call(service, method, context)
            with call.bind():
                try:
                    return await behavior(call.admit(credential, request), context)
                except grpc.aio.AbortError:
                    call.code = str(context.code() or "ABORTED")
                    raise
                except Exception as exc:
                    await call.fail(context, exc)
                finally:
                    call.finish(metrics)

        return wrapper

    def _wrap_stream(self, method: str, behavior: Any) -> Any:
        service, credential, metrics = self._service, self._credential, self._metrics

        async def wrapper(request: Any, context: ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            call = _Call(service, method, context)
            with call.bind():
                try:
                    async for item in behavior(call.admit(credential, request), context):
                        yield item
                except grpc.aio.AbortError:
                    call.code = str(context.code() or "ABORTED")
                    raise
                except Exception as exc:
                    await call.fail(context, exc)
                finally:
                    call.finish(metrics)

        return wrapper
