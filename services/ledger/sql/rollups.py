"""Hourly and daily rollups (bucket x key x tier x model x project), kept with every event.

Every event insert goes through :func:`record_event`, which upserts its
hourly and its daily rollup row in the *same transaction*: a rollup can never lag or disagree with
the events it sums (see docs/ledger.md, "Rollups"). Reports read whole hours
from the rollups and the ragged ends of a range from the raw events.
"""

from __future__ import annotations

from services.ledger.models import USAGE_KINDS, UsageEvent
from services.ledger.money import utc_day
from services.ledger.sql.common import Op, Query, insert_event

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
SUM_COLS = ("requests", "prompt_tokens", "completion_tokens", "cost", "counterfactual_cost", "cache_hits",
            "overage", "cache_savings", "denials", "soft_alerts", "wrong_hits")  # fmt: skip
_SIGNALS = {"denied": 8, "soft_alert": 9, "wrong_hit": 10}


def hour_of(time_us: int) -> int:
    return time_us - time_us % HOUR_US


def contribution(ev: UsageEvent) -> tuple[int, ...] | None:
    """What one event adds to its rollup row (SUM_COLS order); None: nothing."""
    out = [0] * len(SUM_COLS)
    if ev.kind in USAGE_KINDS:
        out[:7] = [1, ev.prompt_tokens, ev.completion_tokens, ev.cost, ev.counterfactual_cost,
                   int(ev.cache_hit), ev.overage]  # fmt: skip
        if ev.kind == "cache_hit":
            out[7] = ev.counterfactual_cost - ev.cost
    elif ev.kind in _SIGNALS:
        out[_SIGNALS[ev.kind]] = 1
    else:
        return None
    return tuple(out)


def _upsert_sql(table: str, bucket: str) -> str:
    return (
        f"INSERT INTO {table} ({bucket}, day, key_id, tier, model, project, org_id, team_id, user_id, "
        + ", ".join(SUM_COLS)
        + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
        + ", ".join("?" for _ in SUM_COLS)
        + f") ON CONFLICT ({bucket}, key_id, tier, model, project) DO UPDATE SET "
        + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in SUM_COLS)
    )


UPSERT = _upsert_sql("rollups_hourly", "hour")
UPSERT_DAILY = _upsert_sql("rollups_daily", "day_start")


def upserts(ev: UsageEvent, sums: tuple[int, ...]) -> list[Query]:
    """The hourly and the daily row (in that order, the lock order on PostgreSQL)."""
    rest = (ev.key_id, ev.tier, ev.model, ev.project, ev.org_id, ev.team_id, ev.user_id, *sums)
    hour = hour_of(ev.time_us)
    day = ev.time_us - ev.time_us % DAY_US
    return [(UPSERT, (hour, utc_day(hour), *rest)), (UPSERT_DAILY, (day, utc_day(day), *rest))]


def record_event(ev: UsageEvent, reservation_id: str | None, detail: str = "",
                 record_id: str | None = None) -> Op[None]:  # fmt: skip
    """Insert the event and add it to its hourly rollup, in the caller's transaction."""
    yield insert_event(ev, reservation_id, detail, record_id)
    sums = contribution(ev)
    if sums is not None:
        # Not `yield from`: a list iterator cannot take the rows the driver sends back.
        for q in upserts(ev, sums):  # noqa: UP028
            yield q
