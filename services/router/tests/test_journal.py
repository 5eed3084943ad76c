"""The settlement journal keeps unconfirmed settlements across restarts; the Settler drains it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from rationer.errors import FailedPrecondition, Unavailable
from services.ledger.calls import CacheHitCall, CommitCall
from services.router.journal import SettlementJournal
from services.router.settlement import Settler
from services.router.types import Charge

COMMIT = CommitCall(reservation_id="r_1", key_id="k_1", prompt_tokens=20, completion_tokens=2)
# The fields every cache-hit record carries besides its ids.
HIT = {"project": "", "tier": "frontier", "model": "m", "prompt_tokens": 5, "completion_tokens": 1}


def _hit(**ids: str) -> CacheHitCall:
    return CacheHitCall(**{**HIT, **ids})  # type: ignore[arg-type]


def test_entries_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "journal.sqlite3"
    journal = SettlementJournal(path)
    first = journal.add(COMMIT)
    second = journal.add(_hit(request_id="q_1", key_id="k_1"))
    journal.done(first)
    journal.close()

    reopened = SettlementJournal(path)
    assert reopened.durable and len(reopened) == 1
    (entry,) = reopened.pending()
    assert (entry.entry_id, entry.call) == (second, _hit(request_id="q_1", key_id="k_1"))
    reopened.close()


def test_in_memory_journal_is_not_durable_and_empty_is_still_a_journal() -> None:
    journal = SettlementJournal()
    # An empty journal is falsy by len(); callers must test `is None`.
    assert not journal.durable and len(journal) == 0
    journal.add(COMMIT)
    assert [e.call for e in journal.pending()] == [COMMIT]


def _old_row(path: Path, kind: str, args: dict[str, Any]) -> None:
    """A row as a router before typed records wrote it: the kind and the call's keyword arguments."""
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO pending (kind, args, created_at) VALUES (?, ?, 0)", (kind, json.dumps(args)))


def test_a_journal_written_before_typed_records_replays_as_typed_records(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    SettlementJournal(path).close()  # the table, as every version made it
    _old_row(path, "commit", {**asdict(COMMIT), "bill_late": True})
    _old_row(path, "cache_hit", {**HIT, "request_id": "q_1", "key_id": "k_1", "record_id": "a_1"})
    journal = SettlementJournal(path)
    assert [e.call for e in journal.pending()] == [
        CommitCall(reservation_id="r_1", key_id="k_1", prompt_tokens=20, completion_tokens=2, bill_late=True),
        _hit(request_id="q_1", key_id="k_1", record_id="a_1"),
    ]
    # And the file layout is unchanged: a kind from the record's class, its fields as JSON.
    journal.add(COMMIT)
    with sqlite3.connect(path) as db:
        kind, args = db.execute("SELECT kind, args FROM pending ORDER BY id DESC LIMIT 1").fetchone()
    assert (kind, json.loads(args)) == ("commit", asdict(COMMIT))
    journal.close()


def test_a_row_of_an_unknown_kind_is_kept_but_not_replayed(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    SettlementJournal(path).close()
    _old_row(path, "refund", asdict(COMMIT))
    journal = SettlementJournal(path)
    assert journal.pending() == [] and len(journal) == 1
    journal.close()


class _Ledger:
    """A ledger double that is down for its first ``down_for`` calls."""

    def __init__(self, down_for: int = 0, refuse: frozenset[str] = frozenset()) -> None:
        self.down_for = down_for
        self.refuse = refuse
        self.landed: list[str] = []
        self.hits: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0

    async def commit(self, call: CommitCall | CacheHitCall) -> Charge:
        args = asdict(call)
        key = args.get("reservation_id") or args["request_id"]
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if self.down_for > 0:
                self.down_for -= 1
                raise Unavailable("ledger down")
            if key in self.refuse:
                raise FailedPrecondition(f"reservation {key} was released")
            self.landed.append(key)
            return Charge(10, 20)
        finally:
            self.in_flight -= 1

    async def record_cache_hit(self, call: CacheHitCall) -> Charge:
        self.hits.append(asdict(call))
        return await self.commit(call)


def _settler(ledger: _Ledger, journal: SettlementJournal) -> tuple[Settler, set[asyncio.Task[Any]]]:
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        return task

    return Settler(ledger, journal, spawn, max_backoff_s=0.01), tasks  # type: ignore[arg-type]


async def _until_empty(journal: SettlementJournal) -> None:
    for _ in range(500):
        if not len(journal):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(journal)} settlements never landed")


async def test_a_commit_the_ledger_misses_lands_once_after_the_outage() -> None:
    ledger, journal = _Ledger(down_for=8), SettlementJournal()
    settler, _ = _settler(ledger, journal)
    with pytest.raises(Unavailable):
        await settler.settle(COMMIT)  # six inline tries, then handed over
    assert len(journal) == 1
    await _until_empty(journal)
    assert ledger.landed == ["r_1"]


async def test_a_cache_hit_record_replayed_by_the_drainer_says_it_was_served() -> None:
    # The inline attempts happen before the answer is served, so the ledger
    # may refuse them (rate limits); once the answer went out on a transient
    # failure, the drainer's replays carry served=True and may not be refused.
    ledger, journal = _Ledger(down_for=8), SettlementJournal()
    settler, _ = _settler(ledger, journal)
    with pytest.raises(Unavailable):
        await settler.settle(_hit(request_id="q_1", key_id="k_1", record_id="a_1"))
    await _until_empty(journal)
    assert [h.get("served", False) for h in ledger.hits] == [False] * 6 + [True] * 3
    assert {h["record_id"] for h in ledger.hits} == {"a_1"} and ledger.landed == ["q_1"]


async def test_resume_replays_in_order_through_one_caller(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    earlier = SettlementJournal(path)
    for i in range(50):
        earlier.add(CommitCall(**{**asdict(COMMIT), "reservation_id": f"r_{i}"}))
    earlier.add(_hit(request_id="q_1", key_id="k_1"))
    earlier.close()
    ledger = _Ledger(down_for=5, refuse=frozenset({"r_7"}))
    settler, tasks = _settler(ledger, SettlementJournal(path))
    assert settler.resume() == 51
    await _until_empty(settler.journal)
    # In journal order, the refused one dropped (logged), the rest once each.
    assert ledger.landed == [f"r_{i}" for i in range(50) if i != 7] + ["q_1"]
    # One drainer: however long the backlog, one call at a time.
    assert ledger.max_in_flight == 1 and len(tasks) == 1


def test_an_empty_setting_keeps_the_journal_in_memory() -> None:
    from services.router.settings import RouterSettings

    assert RouterSettings.model_validate({"settlement_journal": ""}).settlement_journal is None
    assert RouterSettings().settlement_journal is not None  # durable by default


async def test_a_hung_ledger_does_not_hold_the_response() -> None:
    class Hung(_Ledger):
        async def commit(self, call: CommitCall | CacheHitCall) -> Charge:
            await asyncio.sleep(30)
            raise AssertionError("unreachable")

    journal = SettlementJournal()
    settler, tasks = _settler(Hung(), journal)
    settler._inline_budget_s = 0.2
    with pytest.raises(Unavailable, match=r"did not confirm the commit within 0\.2s"):
        await settler.settle(COMMIT)
    assert len(journal) == 1  # journaled, and handed to the drainer
    for t in tasks:
        t.cancel()
