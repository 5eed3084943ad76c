"""The ledger data plane's one gRPC client: the router, the CLI, replay and the benches use it.

Returns the ledger's plain dataclasses and raises ``rationer.errors`` classes
(mapped back from gRPC status codes; RESOURCE_EXHAUSTED keeps its limit id,
reset time and retry-after from the trailers). Settlement takes the typed
records of ``services.ledger.calls``. Every call forwards the request id and
principal of the call being served (``call_metadata``), so logs join up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import grpc

from rationer import errors
from rationer.api.common.v1 import common_pb2
from rationer.api.ledger.v1 import ledger_pb2 as pb
from rationer.api.ledger.v1 import ledger_pb2_grpc as pb_grpc
from rationer.platform.client import call_metadata, domain_error, internal_channel
from rationer.platform.identity import Principal
from services.ledger import convert as cv
from services.ledger import models as m
from services.ledger.calls import CacheHitCall, CommitCall

R = TypeVar("R")

def map_rpc_error(exc: grpc.aio.AioRpcError) -> errors.RationerError:
    """The domain error a gRPC failure stands for."""
    return domain_error(exc, service="ledger")


async def call(fn: Callable[..., Awaitable[R]], request: Any, timeout: float,
               metadata: Sequence[tuple[str, str]] = ()) -> R:  # fmt: skip
    try:
        return await fn(request, timeout=timeout, metadata=(*call_metadata(), *metadata))
    except grpc.aio.AioRpcError as exc:
        raise map_rpc_error(exc) from None


@dataclass(frozen=True)
class Identity:
    """WhoAmI: the bearer's role and place (``key_id`` "" for the admin token)."""

    role: str
    key_id: str
    org_id: str
    team_id: str
    user_id: str
    expires_at_us: int | None  # None: the key never expires


@dataclass(frozen=True)
class HeadroomResult:
    budgets: list[m.Headroom]
    min_remaining_fraction: float


class LedgerClient:
    """``bearer`` (an API key or the admin credential) is for Usage;
    ``service_token`` for the data-plane RPCs that are the router's alone
    (Authenticate, GetHeadroom, Authorize, Commit, Release, RecordCacheHit).
    A channel passed in brings its own credentials."""

    def __init__(self, target: str | grpc.aio.Channel, *, timeout_s: float = 5.0, bearer: str = "",
                 service_token: str = "") -> None:  # fmt: skip
        self._own = isinstance(target, str)
        self._channel = internal_channel(target, service_token) if isinstance(target, str) else target
        self._stub = pb_grpc.LedgerServiceStub(self._channel)
        self._timeout = timeout_s
        self._md = (("authorization", f"Bearer {bearer}"),) if bearer else ()

    def as_bearer(self, bearer: str) -> LedgerClient:
        """A client on this one's channel that calls as ``bearer`` (closing it leaves the channel open)."""
        return LedgerClient(self._channel, timeout_s=self._timeout, bearer=bearer)

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel, for an admin client that shares it (LedgerAdminClient(client.channel, key))."""
        return self._channel

    def connected(self) -> bool:
        """Whether the channel has a live connection now (no call made to find out)."""
        return self._channel.get_state(try_to_connect=False) == grpc.ChannelConnectivity.READY

    async def close(self) -> None:
        if self._own:
            await self._channel.close(None)

    async def __aenter__(self) -> LedgerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def authenticate(self, api_key: str) -> Principal:
        r = await call(self._stub.Authenticate, pb.AuthenticateRequest(api_key=api_key), self._timeout)
        exp = cv.us_of(r.key_expires_at, r.HasField("key_expires_at"))
        return replace(cv.principal_in(r.principal), expires_at_us=exp)

    async def headroom(self, key_id: str, project: str = "") -> HeadroomResult:
        r = await call(self._stub.GetHeadroom, pb.GetHeadroomRequest(key_id=key_id, project=project),
                       self._timeout)  # fmt: skip
        rows = [m.Headroom(h.budget_id, cv.SCOPE_KIND[h.scope.kind], h.scope.id, cv.UNIT[h.unit],
                           h.remaining_fraction, h.remaining) for h in r.budgets]  # fmt: skip
        return HeadroomResult(rows, r.min_remaining_fraction)

    async def authorize(self, key_id: str, tier: str, *, prompt_tokens: int, max_completion_tokens: int,
                        model: str = "", project: str = "", request_id: str = "",
                        ttl_s: float = 0.0) -> m.Reservation:  # fmt: skip
        req = pb.AuthorizeRequest(
            key_id=key_id, tier=tier, model=model, estimated_prompt_tokens=prompt_tokens,
            max_completion_tokens=max_completion_tokens, project=project, request_id=request_id,
            ttl=cv.duration(ttl_s) if ttl_s else None,
        )  # fmt: skip
        r = await call(self._stub.Authorize, req, self._timeout)
        return m.Reservation(r.reservation_id, r.held.nano_usd, cv.us_of(r.expires_at) or 0,
                             tuple(r.soft_alerts), r.min_remaining_fraction, r.replayed)  # fmt: skip

    async def commit(self, c: CommitCall) -> m.CommitResult:
        req = cv.commit_request(c)
        r = await call(self._stub.Commit, req, self._timeout)
        return m.CommitResult(cv.event_in(r.event), r.replayed)

    async def release(self, reservation_id: str, key_id: str, reason: str = "") -> bool:
        req = pb.ReleaseRequest(reservation_id=reservation_id, key_id=key_id, reason=reason)
        return (await call(self._stub.Release, req, self._timeout)).released

    async def record_cache_hit(self, c: CacheHitCall) -> m.UsageEvent:
        """``replayed`` in the reply means this very record already landed (a retry): success.
        Another answer reusing the request id is ALREADY_EXISTS."""
        req = cv.cache_hit_request(c)
        return cv.event_in((await call(self._stub.RecordCacheHit, req, self._timeout)).event)

    async def record_wrong_hit(self, key_id: str, request_id: str) -> tuple[m.UsageEvent, bool]:
        """Count a cache hit the key reported wrong; ``(event, replayed)`` (a repeat adds nothing)."""
        req = pb.RecordWrongHitRequest(key_id=key_id, request_id=request_id)
        r = await call(self._stub.RecordWrongHit, req, self._timeout)
        return cv.event_in(r.event), r.replayed

    async def usage(self, *, scope: tuple[str, str] | None = None, start_us: int | None = None,
                    end_us: int | None = None, group_by: Sequence[str] = ()) -> list[m.UsageRow]:  # fmt: skip
        rows, _, _ = await self.usage_report(scope=scope, start_us=start_us, end_us=end_us, group_by=group_by)
        return rows

    async def usage_report(self, *, scope: tuple[str, str] | None = None, start_us: int | None = None,
                           end_us: int | None = None, group_by: Sequence[str] = (),
                           current_period: str = "") -> tuple[list[m.UsageRow], int | None, int | None]:  # fmt: skip
        """Rows and the [start, end) they cover (``current_period`` resolved by the ledger's clock)."""
        req = pb.UsageRequest(
            scope=cv.scope(*scope) if scope else None,
            period=common_pb2.TimeRange(start=cv.ts(start_us), end=cv.ts(end_us)),
            group_by=[cv.GROUP_PB[g] for g in group_by], current_period=current_period,
        )  # fmt: skip
        r = await call(self._stub.Usage, req, self._timeout, self._md)
        start = cv.us_of(r.period.start, r.period.HasField("start"), "period.start")
        end = cv.us_of(r.period.end, r.period.HasField("end"), "period.end")
        return [cv.usage_row_in(row) for row in r.rows], start, end

    async def whoami(self) -> Identity:
        """Who this client's bearer is (UNAUTHENTICATED for an unknown, revoked or expired key)."""
        r = await call(self._stub.WhoAmI, pb.WhoAmIRequest(), self._timeout, self._md)
        exp = cv.us_of(r.key_expires_at, r.HasField("key_expires_at"))
        return Identity(r.role, r.key_id, r.org_id, r.team_id, r.user_id, exp)

    async def list_prices(self) -> list[m.Price]:
        r = await call(self._stub.ListPrices, pb.ListPricesRequest(), self._timeout)
        return [m.Price(p.tier, p.model, p.input_per_million.nano_usd, p.output_per_million.nano_usd,
                        p.version, cv.us_of(p.effective_from) or 0, p.is_reference,
                        p.cache_read_per_million.nano_usd if p.HasField("cache_read_per_million") else None,
                        p.cache_creation_per_million.nano_usd if p.HasField("cache_creation_per_million") else None)
                for p in r.prices]  # fmt: skip

