"""The audit log: one append-only row per admin change, in the change's own transaction.

:func:`audited` wraps a control-plane operation: it reads the state before,
runs the change, and inserts who/what/when/before/after. Both run in one
transaction, so a change without its audit row (or the reverse) cannot exist.
Secrets never reach it: a created key is logged as its record.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from services.ledger.models import CreatedKey
from services.ledger.sql.common import Op

T = TypeVar("T")

# Audit rows are listed ORDER BY time, id: changes in the same microsecond (or under a
# fixed test clock) must still list in the order they were made, so the id starts with
# this process's sequence number, not with random bits alone.
_sequence = itertools.count()


def _audit_id() -> str:
    return f"a_{next(_sequence):012x}{uuid.uuid4().hex[:20]}"


@dataclass(frozen=True)
class AuditEntry:
    id: str
    time_us: int
    actor: str
    action: str
    target: str
    before_json: str
    after_json: str


def to_json(value: Any) -> str:
    if isinstance(value, CreatedKey):
        value = value.key  # never the secret
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.dumps(value, sort_keys=True, default=str)


def _nothing() -> Op[None]:
    return None
    yield  # a generator that issues no query


def audited(actor: str, action: str, target: Callable[[T], str], change: Op[T], now: int,
            before: Op[Any] | None = None, removed: bool = False) -> Op[T]:  # fmt: skip
    """Run ``change`` and log it; ``before`` reads the prior state (None: it did not exist).

    ``removed``: the change deletes what it returns, which is then the before and the after is null.
    """
    prior = yield from (before if before is not None else _nothing())
    out = yield from change
    if removed:
        prior, shown = out, None
    else:
        shown = out
    yield (
        "INSERT INTO audit_log (id, time, actor, action, target, before_json, after_json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (_audit_id(), now, actor, action, target(out), to_json(prior), to_json(shown)),
    )
    return out


def row_or_none(sql: str, params: tuple[Any, ...], cols: tuple[str, ...]) -> Op[dict[str, Any] | None]:
    """One row as a dict (the "before" of a change to a plain table row)."""
    rows = yield (sql, params)
    return dict(zip(cols, rows[0], strict=True)) if rows else None


def list_audit(start: int | None, end: int | None, action: str, limit: int) -> Op[list[AuditEntry]]:
    sql = "SELECT id, time, actor, action, target, before_json, after_json FROM audit_log WHERE 1 = 1"
    params: list[object] = []
    if start is not None:
        sql, params = sql + " AND time >= ?", [*params, start]
    if end is not None:
        sql, params = sql + " AND time < ?", [*params, end]
    if action:
        sql, params = sql + " AND action = ?", [*params, action]
    rows = yield (sql + " ORDER BY time, id LIMIT ?", (*params, limit))
    return [AuditEntry(r[0], int(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows]
