"""Python client SDK for internal backends: ``rationer.Client`` and ``rationer.AsyncClient``.

    from rationer import Client
    with Client("127.0.0.1:50050", api_key="rk_...") as c:
        answer = c.complete("Draft a two-line thank-you email")
        print(answer.text, answer.route.tier, answer.route.cost_usd)

Errors arrive as ``rationer.errors`` classes (``ResourceExhausted`` carries
``limit_id`` and ``retry_after_s``). The protos are the contract for other
languages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from rationer.api.common.v1 import common_pb2
from rationer.api.router.v1 import router_pb2, router_pb2_grpc
from rationer.platform.client import channel_options, domain_error
from rationer.platform.convert import FINISH_FROM_PROTO, generation_params

NANO = 1_000_000_000
MessagesLike = str | Sequence[dict[str, str]] | Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Route:
    request_id: str
    tier: str
    model: str
    complexity: float
    cache_hit: bool
    prompt_tokens: int
    completion_tokens: int
    cost_nano_usd: int
    savings_nano_usd: int
    fallbacks: tuple[str, ...] = ()
    downgraded: bool = False
    budget_remaining_fraction: float = 1.0
    gateway_overhead_ms: float = 0.0
    model_ms: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)
    settlement_pending: bool = False
    # False when the upstream reported no usage and the hold's maximum was billed.
    usage_exact: bool = True
    finish_reason: str = ""  # "stop", "length" or "cancelled"

    @property
    def cost_usd(self) -> float:
        return self.cost_nano_usd / NANO

    @property
    def savings_usd(self) -> float:
        return self.savings_nano_usd / NANO


@dataclass(frozen=True)
class Answer:
    text: str
    route: Route


@dataclass(frozen=True)
class Chunk:
    delta: str = ""
    restart: bool = False
    route: Route | None = None


@dataclass
class _Opts:
    model: str = "auto"
    max_tokens: int = 0
    temperature: float | None = None
    top_p: float | None = None
    stop: Sequence[str] = ()
    seed: int | None = None
    top_k: int | None = None  # local tiers and Anthropic upstreams; OpenAI-compatible ones ignore it
    no_cache: bool = False
    allow_cache_when_sampling: bool = False
    timeout: float | None = 120.0
    user: str = ""  # the end user the caller acts for (OpenAI's ``user``)
    request_id: str = ""  # sent as ``x-request-id``; the router makes one up when empty


def _messages(messages: MessagesLike) -> list[common_pb2.ChatMessage]:
    if isinstance(messages, str):
        return [common_pb2.ChatMessage(role="user", content=messages)]
    out = []
    for m in messages:
        role, content = (m["role"], m["content"]) if isinstance(m, dict) else (m[0], m[1])
        out.append(common_pb2.ChatMessage(role=role, content=content))
    return out


def _request(messages: MessagesLike, o: _Opts) -> router_pb2.CompleteRequest:
    return router_pb2.CompleteRequest(
        messages=_messages(messages),
        params=generation_params(o.max_tokens, o.stop, o.temperature, o.top_p, o.seed, o.top_k),
        model=o.model,
        no_cache=o.no_cache,
        allow_cache_when_sampling=o.allow_cache_when_sampling,
        user=o.user,
    )


def route_from_proto(r: router_pb2.RouteInfo) -> Route:
    return Route(
        request_id=r.request_id,
        tier=r.tier,
        model=r.model,
        complexity=r.complexity,
        cache_hit=r.cache_hit,
        prompt_tokens=r.usage.prompt_tokens,
        completion_tokens=r.usage.completion_tokens,
        cost_nano_usd=r.cost.nano_usd,
        savings_nano_usd=r.savings.nano_usd,
        fallbacks=tuple(r.fallbacks),
        downgraded=r.downgraded,
        budget_remaining_fraction=r.budget_remaining_fraction,
        gateway_overhead_ms=r.gateway_overhead_ms,
        model_ms=r.model_ms,
        stage_ms=dict(r.stage_ms),
        settlement_pending=r.settlement_pending,
        usage_exact=r.usage_exact,
        finish_reason=FINISH_FROM_PROTO.get(r.finish_reason, ""),
    )


@dataclass(frozen=True)
class TierInfo:
    name: str
    kind: str  # "local" | "frontier" | "unknown"
    rank: int
    model: str


_TIER_KIND = {common_pb2.TIER_KIND_LOCAL: "local", common_pb2.TIER_KIND_FRONTIER: "frontier"}


def _tiers(resp: router_pb2.ListTiersResponse) -> list[TierInfo]:
    return [TierInfo(t.name, _TIER_KIND.get(t.kind, "unknown"), t.rank, t.model) for t in resp.tiers]


def _chunk(c: router_pb2.CompleteChunk) -> Chunk:
    return Chunk(delta=c.delta, restart=c.restart, route=route_from_proto(c.route) if c.final else None)


class _Base:
    def __init__(self, address: str, api_key: str, project: str = "") -> None:
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {api_key}"),)
        if project:
            self._metadata += (("x-rationer-project", project),)
        self.address = address

    def _md(self, o: _Opts) -> tuple[tuple[str, str], ...]:
        return (*self._metadata, ("x-request-id", o.request_id)) if o.request_id else self._metadata


class Client(_Base):
    """Blocking client."""

    def __init__(self, address: str, api_key: str, project: str = "") -> None:
        super().__init__(address, api_key, project)
        self._channel = grpc.insecure_channel(address, options=channel_options(address))
        self._stub = router_pb2_grpc.RouterServiceStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def complete(self, messages: MessagesLike, **opts: Any) -> Answer:
        o = _Opts(**opts)
        try:
            resp = self._stub.Complete(_request(messages, o), metadata=self._md(o), timeout=o.timeout)
        except grpc.RpcError as exc:
            raise domain_error(exc, service="router") from exc  # type: ignore[arg-type]
        return Answer(text=resp.text, route=route_from_proto(resp.route))

    def stream(self, messages: MessagesLike, **opts: Any) -> Iterator[Chunk]:
        o = _Opts(**opts)
        call = self._stub.CompleteStream(_request(messages, o), metadata=self._md(o), timeout=o.timeout)
        try:
            for c in call:
                yield _chunk(c)
        except grpc.RpcError as exc:
            raise domain_error(exc, service="router") from exc  # type: ignore[arg-type]
        finally:
            call.cancel()  # type: ignore[no-untyped-call]

    def tiers(self) -> list[str]:
        return [t.name for t in self.list_tiers()]

    def list_tiers(self) -> list[TierInfo]:
        try:
            resp = self._stub.ListTiers(router_pb2.ListTiersRequest(), metadata=self._metadata, timeout=10)
        except grpc.RpcError as exc:
            raise domain_error(exc, service="router") from exc  # type: ignore[arg-type]
        return _tiers(resp)


class AsyncClient(_Base):
    """asyncio client (grpc.aio)."""

    def __init__(self, address: str, api_key: str, project: str = "", *,
                 channel: grpc.aio.Channel | None = None) -> None:  # fmt: skip
        """``channel``: share one connection among clients (one per key, say); it stays the caller's to close."""
        super().__init__(address, api_key, project)
        self._own = channel is None
        self._channel = channel or grpc.aio.insecure_channel(address, options=channel_options(address))
        self._stub = router_pb2_grpc.RouterServiceStub(self._channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own:
            await self._channel.close(None)

    async def complete(self, messages: MessagesLike, **opts: Any) -> Answer:
        o = _Opts(**opts)
        try:
            resp = await self._stub.Complete(_request(messages, o), metadata=self._md(o), timeout=o.timeout)
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc, service="router") from exc
        return Answer(text=resp.text, route=route_from_proto(resp.route))

    async def stream(self, messages: MessagesLike, **opts: Any) -> AsyncIterator[Chunk]:
        o = _Opts(**opts)
        call = self._stub.CompleteStream(_request(messages, o), metadata=self._md(o), timeout=o.timeout)
        try:
            async for c in call:
                yield _chunk(c)
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc, service="router") from exc
        finally:
            call.cancel()

    async def tiers(self) -> list[str]:
        return [t.name for t in await self.list_tiers()]

    async def list_tiers(self) -> list[TierInfo]:
        try:
            resp = await self._stub.ListTiers(router_pb2.ListTiersRequest(), metadata=self._metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc, service="router") from exc
        return _tiers(resp)
