"""The settlement journal keeps unconfirmed settlements across restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rationer.errors import FailedPrecondition, Unavailable
from services.router.journal import SettlementJournal
from services.router.settlement import settle_until_landed

COMMIT = {"reservation_id": "r_1", "key_id": "k_1", "prompt_tokens": 20, "completion_tokens": 2}


def test_entries_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "journal.sqlite3"
    journal = SettlementJournal(path)
    first = journal.add("commit", COMMIT)
    second = journal.add("cache_hit", {"request_id": "q_1", "key_id": "k_1"})
    journal.done(first)
    journal.close()

    reopened = SettlementJournal(path)
    assert reopened.durable and len(reopened) == 1
    (entry,) = reopened.pending()
    assert (entry.entry_id, entry.kind, entry.args) == (second, "cache_hit", {"request_id": "q_1", "key_id": "k_1"})
    reopened.close()


def test_in_memory_journal_is_not_durable_and_empty_is_still_a_journal() -> None:
    journal = SettlementJournal()
    # An empty journal is falsy by len(); callers must test `is None`.
    assert not journal.durable and len(journal) == 0
    journal.add("commit", COMMIT)
    assert [e.args for e in journal.pending()] == [COMMIT]


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown settlement kind"):
        SettlementJournal().add("refund", COMMIT)


async def test_settle_until_landed_waits_out_an_outage() -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise Unavailable("ledger down")

    assert await settle_until_landed(op, what="commit r_1", max_delay_s=0.01) is True
    assert calls == 4


async def test_settle_until_landed_stops_on_a_definitive_refusal() -> None:
    async def op() -> None:
        raise FailedPrecondition("reservation r_1 was released")

    assert await asyncio.wait_for(settle_until_landed(op, what="commit r_1"), 5) is False


def test_an_empty_setting_keeps_the_journal_in_memory() -> None:
    from services.router.settings import RouterSettings

    assert RouterSettings.model_validate({"settlement_journal": ""}).settlement_journal is None
    assert RouterSettings().settlement_journal is not None  # durable by default
