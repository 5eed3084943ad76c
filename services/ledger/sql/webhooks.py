"""Webhooks and their deliveries: configuration, the claim of due deliveries, the delivery log.

Claiming: a due delivery (pending, ``next_attempt_at <= now``, lease expired)
is claimed by setting ``lease_until`` in one UPDATE over a subquery that on
PostgreSQL takes ``FOR UPDATE SKIP LOCKED``: two replicas' deliverers never
claim one row (one skips the other's locked rows, and the lease keeps a
claimed row from being taken again until it ends), and one that dies
mid-send leaves its rows to be retried when the lease runs out.
"""

from __future__ import annotations

from dataclasses import dataclass

from rationer.errors import NotFound
from services.ledger.sql.common import Dialect, Op

WEBHOOK_COLS = "id, budget_id, org_id, url, name, created_at"
DELIVERY_COLS = "id, webhook_id, alert_id, state, attempts, next_attempt_at, created_at, body"


@dataclass(frozen=True)
class Webhook:
    id: str
    budget_id: str  # "" for an org webhook
    org_id: str  # "" for a budget webhook
    url: str
    name: str
    created_at_us: int
    # Never in listings or the audit log; only AddWebhook's answer and the deliverer see it.
    secret: str = ""


@dataclass(frozen=True)
class Attempt:
    attempt: int
    time_us: int
    status_code: int  # 0: no HTTP response
    error: str


@dataclass(frozen=True)
class Delivery:
    id: str
    webhook_id: str
    alert_id: str  # "" for a test
    state: str  # pending | delivered | failed
    attempts: int
    next_attempt_at_us: int
    created_at_us: int
    body: str
    log: tuple[Attempt, ...] = ()


def _webhook(r: tuple[object, ...]) -> Webhook:
    return Webhook(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), int(str(r[5])))


def _delivery(r: tuple[object, ...]) -> Delivery:
    return Delivery(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(str(r[4])), int(str(r[5])), int(str(r[6])),
                    str(r[7]))  # fmt: skip


def budget_exists(budget_id: str) -> Op[bool]:
    return bool((yield ("SELECT 1 FROM budgets WHERE id = ?", (budget_id,))))


def add_webhook(w: Webhook) -> Op[Webhook]:
    if w.budget_id and not (yield from budget_exists(w.budget_id)):
        raise NotFound(f"budget {w.budget_id!r} does not exist; `rationer budgets list` shows the budget ids")
    if w.org_id and not (yield ("SELECT 1 FROM orgs WHERE id = ?", (w.org_id,))):
        raise NotFound(f"org {w.org_id!r} does not exist")
    yield (
        f"INSERT INTO webhooks ({WEBHOOK_COLS}, secret) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (w.id, w.budget_id, w.org_id, w.url, w.name, w.created_at_us, w.secret),
    )
    return w


def get_webhook(webhook_id: str, with_secret: bool = False) -> Op[Webhook]:
    rows = yield (f"SELECT {WEBHOOK_COLS}, secret FROM webhooks WHERE id = ?", (webhook_id,))
    if not rows:
        raise NotFound(f"webhook {webhook_id!r} does not exist; `rationer budgets webhook list` shows the ids")
    w = _webhook(rows[0])
    if with_secret:
        w = Webhook(w.id, w.budget_id, w.org_id, w.url, w.name, w.created_at_us, str(rows[0][6]))
    return w


def list_webhooks(budget_ids: list[str] | None, org_ids: list[str] | None) -> Op[list[Webhook]]:
    """Webhooks of these budgets or orgs (None, None: all)."""
    if budget_ids is None and org_ids is None:
        rows = yield (f"SELECT {WEBHOOK_COLS} FROM webhooks ORDER BY created_at, id", ())
        return [_webhook(r) for r in rows]
    b, o = budget_ids or [""], org_ids or [""]
    rows = yield (
        f"SELECT {WEBHOOK_COLS} FROM webhooks WHERE budget_id IN ({', '.join('?' for _ in b)})"
        f" OR org_id IN ({', '.join('?' for _ in o)}) ORDER BY created_at, id",
        (*b, *o),
    )
    return [_webhook(r) for r in rows if r[1] or r[2]]


def remove_webhook(webhook_id: str) -> Op[Webhook]:
    """Delete the webhook and its pending deliveries (the log of past ones stays)."""
    w = yield from get_webhook(webhook_id)
    yield ("DELETE FROM webhook_deliveries WHERE webhook_id = ? AND state = 'pending'", (webhook_id,))
    yield ("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
    return w


def add_test_delivery(delivery_id: str, webhook_id: str, body: str, now: int, lease_until: int) -> Op[None]:
    """A test delivery, born claimed by the caller (who sends it now, once)."""
    yield (
        "INSERT INTO webhook_deliveries (id, webhook_id, alert_id, body, state, attempts, next_attempt_at,"
        " lease_until, created_at) VALUES (?, ?, '', ?, 'pending', 1, ?, ?, ?)",
        (delivery_id, webhook_id, body, now, lease_until, now),
    )


@dataclass(frozen=True)
class Claimed:
    delivery: Delivery
    url: str
    secret: str


def claim_due(now: int, lease_until: int, limit: int, d: Dialect) -> Op[list[Claimed]]:
    """Claim up to ``limit`` due deliveries for this deliverer and count the attempt."""
    skip = f"{d.for_update} SKIP LOCKED" if d.for_update else ""
    rows = yield (
        "UPDATE webhook_deliveries SET lease_until = ?, attempts = attempts + 1 WHERE id IN ("
        " SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= ? AND lease_until <= ?"
        f" ORDER BY next_attempt_at, id LIMIT ?{skip}) RETURNING {DELIVERY_COLS}",
        (lease_until, now, now, limit),
    )
    out: list[Claimed] = []
    for r in rows:
        dv = _delivery(r)
        hook = yield ("SELECT url, secret FROM webhooks WHERE id = ?", (dv.webhook_id,))
        if hook:
            out.append(Claimed(dv, str(hook[0][0]), str(hook[0][1])))
    return out


def record_attempt(delivery_id: str, attempt: int, now: int, status: int, error: str,
                   next_at: int | None, max_attempts: int) -> Op[str]:  # fmt: skip
    """Log one attempt and settle the delivery: delivered (2xx), pending (retry at ``next_at``) or failed."""
    ok = 200 <= status < 300
    state = "delivered" if ok else ("failed" if next_at is None or attempt >= max_attempts else "pending")
    yield (
        "INSERT INTO webhook_attempts (delivery_id, attempt, time, status_code, error) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (delivery_id, attempt) DO NOTHING",
        (delivery_id, attempt, now, status, error[:500]),
    )
    yield (
        "UPDATE webhook_deliveries SET state = ?, next_attempt_at = ?, lease_until = 0 WHERE id = ?",
        (state, next_at if state == "pending" and next_at is not None else now, delivery_id),
    )
    return state


def list_deliveries(webhook_id: str, limit: int) -> Op[list[Delivery]]:
    """Newest first, each with its attempt log."""
    rows = yield (
        f"SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE webhook_id = ? ORDER BY created_at DESC, id LIMIT ?",
        (webhook_id, limit),
    )
    out = [_delivery(r) for r in rows]
    if not out:
        return out
    marks = ", ".join("?" for _ in out)
    logs = yield (
        f"SELECT delivery_id, attempt, time, status_code, error FROM webhook_attempts WHERE delivery_id IN ({marks})"
        " ORDER BY delivery_id, attempt",
        tuple(d.id for d in out),
    )
    by: dict[str, list[Attempt]] = {}
    for r in logs:
        by.setdefault(str(r[0]), []).append(Attempt(int(r[1]), int(r[2]), int(r[3]), str(r[4])))
    return [Delivery(**{**d.__dict__, "log": tuple(by.get(d.id, ()))}) for d in out]
