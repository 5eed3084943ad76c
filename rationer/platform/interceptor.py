"""The single server interceptor shared by every service.

It binds a request id and the caller's principal into structlog's context for
the duration of each call, maps the typed domain-error tree
(``rationer.errors``) to gRPC status codes, and records Prometheus metrics.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from grpc.aio import ServicerContext

from rationer.errors import RationerError, ResourceExhausted
from rationer.platform import metrics

log = structlog.get_logger(__name__)

REQUEST_ID_KEY = "x-request-id"
# Set by the router on internal calls: "org/team/user/key". Informational only:
# services authorize from request fields the router filled from the ledger.
PRINCIPAL_KEY = "x-rationer-principal"
RETRY_AFTER_KEY = "retry-after"
LIMIT_ID_KEY = "x-rationer-limit"
RESETS_AT_KEY = "x-rationer-resets-at"

_PASSTHROUGH_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def _metadata(context: ServicerContext[Any, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in context.invocation_metadata() or ():
        key, value = item[0], item[1]
        if isinstance(value, str):
            out[key.lower()] = value
    return out


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


class _Call:
    """Per-call bookkeeping shared by the unary and streaming wrappers."""

    def __init__(self, service: str, method: str, context: ServicerContext[Any, Any]) -> None:
        md = _metadata(context)
        self.service = service
        self.method = method.rsplit("/", 1)[-1]
        self.request_id = md.get(REQUEST_ID_KEY) or uuid.uuid4().hex
        self.principal = md.get(PRINCIPAL_KEY, "")
        self.started = time.perf_counter()
        self.code = "OK"

    def bind(self) -> Any:
        return structlog.contextvars.bound_contextvars(
            request_id=self.request_id, rpc=self.method, principal=self.principal or None
        )

    async def fail(self, context: ServicerContext[Any, Any], exc: BaseException) -> None:
        if isinstance(exc, RationerError):
            self.code = exc.code
            context.set_trailing_metadata(_trailers(exc))
            await context.abort(grpc.StatusCode[exc.code], exc.message)
        self.code = "INTERNAL"
        log.exception("unhandled error")
        await context.abort(
            grpc.StatusCode.INTERNAL,
            f"internal error (request id {self.request_id}); the operator's logs have details",
        )

    def finish(self) -> None:
        metrics.observe_rpc(self.service, self.method, self.code, time.perf_counter() - self.started)


class PlatformInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Binds context, maps domain errors and records metrics for every RPC."""

    def __init__(self, service: str) -> None:
        self._service = service

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
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _wrap_unary(self, method: str, behavior: Any) -> Any:
        service = self._service

        async def wrapper(request: Any, context: ServicerContext[Any, Any]) -> Any:
            call = _Call(service, method, context)
            with call.bind():
                try:
                    return await behavior(request, context)
                except grpc.aio.AbortError:
                    call.code = str(context.code() or "ABORTED")
                    raise
                except Exception as exc:
                    await call.fail(context, exc)
                finally:
                    call.finish()

        return wrapper

    def _wrap_stream(self, method: str, behavior: Any) -> Any:
        service = self._service

        async def wrapper(request: Any, context: ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            call = _Call(service, method, context)
            with call.bind():
                try:
                    async for item in behavior(request, context):
                        yield item
                except grpc.aio.AbortError:
                    call.code = str(context.code() or "ABORTED")
                    raise
                except Exception as exc:
                    await call.fail(context, exc)
                finally:
                    call.finish()

        return wrapper
