"""Usage events that need no reservation: cache hits and wrong-hit reports (see services.ledger.sql).

Every answer served is one event. A record's idempotency key is the
caller's id of that served answer (``record_id``), scoped to the key, so a
retry of one record lands once while three answers under one request id are
three records — or, when the caller has not served them yet, one record and
two ALREADY_EXISTS refusals, as for Authorize.
"""

from __future__ import annotations

from dataclasses import replace

from rationer.errors import NotFound
from services.ledger.calls import CacheHitCall
from services.ledger.models import UsageEvent
from services.ledger.sql.common import (
    EVENT_COLS,
    Op,
    current_price,
    event_from_row,
    load_key_by_id,
    require_active,
)
from services.ledger.sql.data import event, new_id, reused_request_id
from services.ledger.sql.reference import counterfactual
from services.ledger.sql.requests import store_prompt
from services.ledger.sql.rollups import record_event


def existing_hit(key_id: str, record: str) -> Op[UsageEvent | None]:
    rows = yield (
        f"SELECT {EVENT_COLS} FROM events WHERE key_id = ? AND record_id = ? AND kind = 'cache_hit'",
        (key_id, record),
    )
    return event_from_row(rows[0]) if rows else None


def record_cache_hit(a: CacheHitCall, now: int) -> Op[tuple[UsageEvent, bool]]:
    """Append the hit's zero-cost event; ``(event, replayed)``."""
    earlier = yield from existing_hit(a.key_id, a.record)
    if earlier is not None:
        return earlier, True
    if not a.served:
        # Not served yet: a request id this key already used (by another
        # answer, or by an Authorize) is refused, so the answer is not served.
        used = yield (
            "SELECT 1 FROM events WHERE key_id = ? AND request_id = ? AND kind = 'cache_hit'"
            " UNION ALL SELECT 1 FROM reservations WHERE key_id = ? AND request_id = ?",
            (a.key_id, a.request_id, a.key_id, a.request_id),
        )
        if used:
            raise reused_request_id(a.request_id)
    key = require_active((yield from load_key_by_id(a.key_id)), now, a.key_id)
    version = (yield from current_price(a.tier)).version if a.tier else 0
    cf = yield from counterfactual(a, 0)
    ev = event(key, now, "cache_hit", a.request_id, a.project, a.tier, a.model,
               (a.prompt_tokens, a.completion_tokens), 0, cf, True, a.latency_ms, version,
               a.status_code or 200)  # fmt: skip
    if a.served:
        ev = replace(ev, detail="recorded after it was served (the ledger was unreachable then)")
    yield from record_event(ev, None, ev.detail, record_id=a.record)
    yield from store_prompt(ev, a.prompt_text)
    return ev, False


def record_wrong_hit(key_id: str, request_id: str, now: int) -> Op[tuple[UsageEvent, bool]]:
    """A hit this key received was reported wrong: one zero-cost ``wrong_hit``
    event with the hit's team, user, project, tier and model, so chargeback
    counts it where the hit was counted; ``(event, replayed)``."""
    rows = yield (
        f"SELECT {EVENT_COLS} FROM events WHERE key_id = ? AND request_id = ? AND kind IN ('wrong_hit', 'cache_hit')"
        " ORDER BY kind DESC, time",
        (key_id, request_id),
    )
    found = [event_from_row(r) for r in rows]
    if found and found[0].kind == "wrong_hit":
        return found[0], True
    if not found:
        raise NotFound(f"key {key_id} has no cache hit recorded under request id {request_id!r}")
    hit = found[0]
    ev = replace(hit, event_id=new_id("e"), time_us=now, kind="wrong_hit", prompt_tokens=0, completion_tokens=0,
                 cost=0, counterfactual_cost=0, cache_hit=False, latency_ms=0, detail="cache hit reported wrong",
                 overage=0, overage_tokens=0, status=0)  # fmt: skip
    yield from record_event(ev, None, ev.detail, record_id=request_id)
    return ev, False
