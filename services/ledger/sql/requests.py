"""The console's Requests log: recent calls, paged by (time, id), scoped by role; prompt text storage.

A request is an event of a kind that answers or refuses a call (charge,
embedding, cache hit, denial). Pages run newest first along the
``(scope column, time, id)`` indexes of migration 0006, so a page reads its
rows plus the ones the filters skip, never the whole table. The cursor is
the (time, id) of the last row shown, so paging is stable while new events
arrive (they sort before the first page) and no row shows twice.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from rationer.errors import InvalidArgument
from services.ledger.calls import PROMPT_MAX_CHARS
from services.ledger.models import UsageEvent
from services.ledger.sql.common import EVENT_COLS, Op, event_from_row

REQUEST_KINDS = ("charge", "embedding", "cache_hit", "denied")


@dataclass(frozen=True)
class Scope:
    """What the caller may see: "" (everything), or one org or team."""

    column: str = ""  # "", "org_id", "team_id"
    value: str = ""


@dataclass(frozen=True)
class RequestsQuery:
    scope: Scope
    start_us: int | None = None
    end_us: int | None = None
    org_id: str = ""
    team_id: str = ""
    key_id: str = ""
    tier: str = ""
    model: str = ""
    status: int = 0  # 0 = any
    cache: str = ""  # "", "hit", "miss"
    page_size: int = 50
    cursor: tuple[int, str] | None = None  # (time, id) of the previous page's last row


@dataclass(frozen=True)
class RequestRecord:
    event: UsageEvent
    prompt_text: str = ""
    prompt_truncated: bool = False


def encode_cursor(time_us: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{time_us}:{event_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The (time, id) a cursor names; INVALID_ARGUMENT for anything this ledger did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        time_text, sep, event_id = raw.partition(":")
        if not sep or not event_id or not time_text.isdigit() or len(event_id) > 64:
            raise ValueError(raw)
        return int(time_text), event_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument(f"cursor {cursor[:80]!r} is not one this ledger handed out; pass the "
                              "next_cursor of the previous page, or none for the newest") from None  # fmt: skip


def _where(q: RequestsQuery) -> tuple[str, list[object]]:
    kinds = ", ".join(f"'{k}'" for k in REQUEST_KINDS)
    sql, params = f" WHERE kind IN ({kinds})", list[object]()
    conds: list[tuple[str, object]] = []
    column: str
    if q.scope.column:
        conds.append((f"{q.scope.column} = ?", q.scope.value))
    value: object
    for column, value in (("org_id", q.org_id), ("team_id", q.team_id), ("key_id", q.key_id),
                          ("tier", q.tier), ("model", q.model)):  # fmt: skip
        if value:
            conds.append((f"{column} = ?", value))
    if q.status:
        conds.append(("status = ?", q.status))
    if q.cache:
        conds.append(("cache_hit = ?", int(q.cache == "hit")))
    end = q.end_us
    if q.cursor is not None:
        # One upper bound for the index range: SQLite uses only one of two.
        end = q.cursor[0] + 1 if end is None else min(end, q.cursor[0] + 1)
    if q.start_us is not None:
        conds.append(("time >= ?", q.start_us))
    if end is not None:
        conds.append(("time < ?", end))
    for cond, value in conds:
        sql, params = f"{sql} AND {cond}", [*params, value]
    if q.cursor is not None:
        # The bound above ends the range at t; this only sorts out the ties at t.
        sql, params = f"{sql} AND (time < ? OR id < ?)", [*params, *q.cursor]
    return sql, params


def list_requests(q: RequestsQuery) -> Op[tuple[list[RequestRecord], str]]:
    """One page, newest first, and the cursor of the next ("" when this is the last)."""
    where, params = _where(q)
    rows = yield (f"SELECT {EVENT_COLS} FROM events{where} ORDER BY time DESC, id DESC LIMIT ?",
                  (*params, q.page_size + 1))  # fmt: skip
    events = [event_from_row(r) for r in rows[: q.page_size]]
    prompts: dict[str, tuple[str, bool]] = {}
    if events:
        marks = ", ".join("?" for _ in events)
        found = yield (f"SELECT event_id, prompt, truncated FROM event_prompts WHERE event_id IN ({marks})",
                       tuple(e.event_id for e in events))  # fmt: skip
        prompts = {str(r[0]): (str(r[1]), bool(r[2])) for r in found}
    out = [RequestRecord(e, *prompts.get(e.event_id, ("", False))) for e in events]
    more = len(rows) > q.page_size
    return out, encode_cursor(events[-1].time_us, events[-1].event_id) if more else ""


def store_prompt(ev: UsageEvent, prompt: str) -> Op[None]:
    """Keep the prompt with its event, in the event's transaction, only if the org logs prompts now.

    The router sends a prompt only for orgs that log them, but it learned
    that from a cached Authenticate; checking the org's setting here, in the
    same transaction, means an org that turned logging off stores nothing
    from that moment on, whatever a router still believes.
    """
    if not prompt:
        return
    rows = yield ("SELECT log_prompts FROM orgs WHERE id = ?", (ev.org_id,))
    if not rows or not rows[0][0]:
        return
    text = prompt[:PROMPT_MAX_CHARS]
    yield ("INSERT INTO event_prompts (event_id, org_id, prompt, truncated) VALUES (?, ?, ?, ?)",
           (ev.event_id, ev.org_id, text, int(len(prompt) > PROMPT_MAX_CHARS)))  # fmt: skip


def set_log_prompts(org_id: str, on: bool) -> Op[dict[str, object] | None]:
    """The org's settings after the change; None when there is no such org."""
    yield ("UPDATE orgs SET log_prompts = ? WHERE id = ?", (int(on), org_id))
    return (yield from org_settings(org_id))


def org_settings(org_id: str) -> Op[dict[str, object] | None]:
    rows = yield ("SELECT id, name, isolate_teams, log_prompts FROM orgs WHERE id = ?", (org_id,))
    if not rows:
        return None
    r = rows[0]
    return {"id": r[0], "name": r[1], "isolate_teams": bool(r[2]), "log_prompts": bool(r[3])}
