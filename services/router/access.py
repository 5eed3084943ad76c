"""One structured access-log line per router request, HTTP and gRPC alike.

A door opens an :class:`AccessEntry` for each request (:func:`request`);
the pipeline notes who called (:func:`identified`, from the auth cache) and
the call's state (:func:`attach`) on whatever entry is current, and the door
writes the line when the answer has gone out, errors and 429s included
(:func:`finish`). The line names the caller by ids only and carries numbers
and names chosen by the gateway, never the caller's text:

    event="request" door=http method=POST route=/v1/chat/completions status=200
    request_id=... org_id=... team_id=... key_id=... tier=... model=...
    tokens_in=12 tokens_out=40 cost_nano_usd=... savings_nano_usd=...
    cache="hit"|"miss"|"off" fallbacks=0 latency_ms=... [error_code=... limit=...]

Operational probes (health, readiness, /metrics) are logged at DEBUG so a
scraper does not drown the log; everything else at INFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import structlog

from rationer.errors import RationerError, ResourceExhausted
from services.router.types import Prepared, Principal

log = structlog.get_logger("rationer.access")


@dataclass
class AccessEntry:
    door: str
    request_id: str
    started: float
    principal: Principal | None = None
    prep: Prepared | None = None
    error: RationerError | None = None
    # What a call without a chat pipeline state billed (embeddings): tier, model, tokens in, cost.
    billing: tuple[str, str, int, int] | None = None


_current: ContextVar[AccessEntry | None] = ContextVar("rationer_access_entry", default=None)


@contextlib.contextmanager
def request(door: str, request_id: str) -> Iterator[AccessEntry]:
    """The entry of the request this task now serves."""
    entry = AccessEntry(door, request_id, time.perf_counter())
    token = _current.set(entry)
    try:
        yield entry
    finally:
        # An async generator closed from elsewhere (garbage collection) runs this in another context.
        with contextlib.suppress(ValueError):
            _current.reset(token)


def identified(principal: Principal) -> None:
    entry = _current.get()
    if entry is not None:
        entry.principal = principal


def attach(prep: Prepared) -> None:
    entry = _current.get()
    if entry is not None:
        entry.prep = prep


def billed(tier: str, model: str, tokens_in: int, cost_nano_usd: int) -> None:
    entry = _current.get()
    if entry is not None:
        entry.billing = (tier, model, tokens_in, cost_nano_usd)


def failed(exc: BaseException) -> None:
    """Note the domain error the request ends with (its code and limit go in the line)."""
    entry = _current.get()
    if entry is not None and isinstance(exc, RationerError):
        entry.error = exc


def finish(entry: AccessEntry, method: str, status: int | str, *, route: str = "", quiet: bool = False) -> None:
    """Write the request's line: ``method`` is the HTTP method and ``route`` its path pattern, or the RPC name."""
    fields = line_fields(entry, method, status)
    if route:
        fields["route"] = route
    (log.debug if quiet else log.info)("request", **fields)


def line_fields(entry: AccessEntry, method: str, status: int | str) -> dict[str, Any]:
    rid = entry.prep.request_id if entry.prep is not None else entry.request_id
    out: dict[str, Any] = {"door": entry.door, "method": method, "status": status, "request_id": rid}
    principal = entry.principal or (entry.prep.principal if entry.prep is not None else None)
    if principal is not None:
        out |= {"org_id": principal.org_id, "team_id": principal.team_id, "key_id": principal.key_id}
    prep = entry.prep
    if prep is not None:
        res = prep.result
        out |= {
            "tier": res.tier or (prep.tiers_tried[-1] if prep.tiers_tried else ""),
            "model": res.model or prep.request.model or "auto",
            "project": prep.request.project,
            "tokens_in": res.prompt_tokens,
            "tokens_out": res.completion_tokens,
            "cost_nano_usd": res.cost_nano_usd,
            "savings_nano_usd": res.savings_nano_usd,
            "cache": "hit" if res.cache_hit else ("miss" if prep.cacheable else "off"),
            "fallbacks": len(res.fallbacks),
            "settlement_pending": res.settlement_pending,
        }
    elif entry.billing is not None:
        tier, model, tokens_in, cost = entry.billing
        out |= {"tier": tier, "model": model, "tokens_in": tokens_in, "tokens_out": 0, "cost_nano_usd": cost}
    if entry.error is not None:
        out["error_code"] = entry.error.code
        if isinstance(entry.error, ResourceExhausted) and entry.error.limit_id:
            out["limit"] = entry.error.limit_id
    out["latency_ms"] = round((time.perf_counter() - entry.started) * 1000, 2)
    return out


def grpc_status(exc: BaseException | None) -> str:
    """The status code name a gRPC call ends with (the interceptor maps domain errors the same way)."""
    if exc is None:
        return "OK"
    if isinstance(exc, RationerError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "INTERNAL"
