"""Wrong-hit feedback: which key received which cached answer, and a per-key
rate limit on reports.

A hit looked up with a request id and key id is remembered for
``window_s``; a report for that request id is accepted only from the same
tenant and key, once (a repeat is acknowledged, not counted again), and each
key may report at most ``per_minute`` times a minute (token bucket, burst of
the same size). Memory only: after a restart old hits cannot be reported,
which costs a report, never a wrong eviction. No gRPC here.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from rationer.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from rationer.platform.clock import Clock

MAX_ID_CHARS = 128


@dataclass
class _Hit:
    key_id: str
    entry_id: str
    at: float
    reported: bool = False


@dataclass(frozen=True)
class Report:
    entry_id: str
    already_reported: bool


def _id(value: str, name: str) -> str:
    if not value or not value.strip():
        raise InvalidArgument(f"{name} is empty; send the {name} the hit was served under")
    if len(value) > MAX_ID_CHARS or not value.isprintable():
        raise InvalidArgument(f"{name} must be at most {MAX_ID_CHARS} printable characters")
    return value


class FeedbackBook:
    def __init__(self, clock: Clock, *, window_s: float = 24 * 3600.0, per_minute: int = 10,
                 max_hits: int = 200_000) -> None:  # fmt: skip
        self._clock = clock
        self._window_s = window_s
        self._rate = per_minute / 60.0
        self._burst = float(per_minute)
        self._max_hits = max_hits
        self._hits: OrderedDict[tuple[str, str], _Hit] = OrderedDict()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # (tokens, at)

    def record(self, tenant: str, request_id: str, key_id: str, entry_id: str) -> None:
        if not request_id or not key_id or max(len(request_id), len(key_id)) > MAX_ID_CHARS:
            return  # the caller did not ask to be able to report this hit (or sent ids report() refuses)
        now = self._clock.time()
        key = (tenant, request_id)
        self._hits.pop(key, None)
        self._hits[key] = _Hit(key_id, entry_id, now)
        oldest_allowed = now - self._window_s
        while len(self._hits) > self._max_hits or next(iter(self._hits.values())).at < oldest_allowed:
            self._hits.popitem(last=False)

    def report(self, tenant: str, key_id: str, request_id: str) -> Report:
        request_id = _id(request_id, "request_id")
        key_id = _id(key_id, "key_id")
        now = self._clock.time()
        self._take_token(tenant, key_id, now)
        hit = self._hits.get((tenant, request_id))
        if hit is None or hit.at < now - self._window_s:
            raise NotFound(
                f"no cached answer was served for request {request_id!r} to this tenant in the last "
                f"{self._window_s / 3600:g} h; only answers from the cache can be reported"
            )
        if hit.key_id != key_id:
            raise PermissionDenied(
                f"request {request_id!r} was answered for another API key; only that key may report it"
            )
        first = not hit.reported
        hit.reported = True
        return Report(entry_id=hit.entry_id, already_reported=not first)

    def _take_token(self, tenant: str, key_id: str, now: float) -> None:
        tokens, at = self._buckets.get((tenant, key_id), (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            wait = (1.0 - tokens) / self._rate
            raise ResourceExhausted(
                f"this key has sent {self._burst:g} wrong-hit reports within a minute; retry in {wait:.0f} s",
                limit_id="cache_feedback", retry_after_s=wait,
            )  # fmt: skip
        self._buckets[(tenant, key_id)] = (tokens - 1.0, now)
