"""One journal per router replica: derived paths, the OS lock, adopting a dead replica's journal."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.ledger.calls import CommitCall
from services.router.journal import SettlementJournal
from services.router.journal_lock import JournalInUse, lock_path
from services.router.orphans import adopt_orphans, sibling_journals
from services.router.settings import RouterSettings

# Holds a journal open (and so its lock) until killed; prints once it holds it.
HOLDER = """
import sys, time
from pathlib import Path
from services.router.journal import SettlementJournal
j = SettlementJournal(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(600)
"""


def _commit(n: int) -> CommitCall:
    return CommitCall(reservation_id=f"r_{n}", key_id="k_1", prompt_tokens=20, completion_tokens=n)


def _ids(journal: SettlementJournal) -> list[str]:
    return sorted(e.call.reservation_id for e in journal.pending() if isinstance(e.call, CommitCall))


def test_each_replica_id_gets_its_own_file_next_to_the_configured_one(tmp_path: Path) -> None:
    base = tmp_path / "router-settlements.sqlite3"
    a = RouterSettings(settlement_journal=base, replica_id="router-0")
    b = RouterSettings(settlement_journal=base, replica_id="router-1")
    assert a.journal_path == tmp_path / "router-settlements.router-0.sqlite3"
    assert b.journal_path == tmp_path / "router-settlements.router-1.sqlite3"
    assert RouterSettings(settlement_journal=base).journal_path == base  # no id: the path as configured
    assert RouterSettings.model_validate({"settlement_journal": "", "replica_id": "r1"}).journal_path is None


@pytest.mark.parametrize("bad", ["../x", "a/b", "-lead", "x" * 64, "a b"])
def test_a_replica_id_that_is_not_a_plain_file_name_part_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="replica_id"):
        RouterSettings(replica_id=bad)


def test_a_journal_open_elsewhere_refuses_a_second_opener_until_closed(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    first = SettlementJournal(path)
    with pytest.raises(JournalInUse, match=r"in use by another live router process \(pid \d+\).*replica_id"):
        SettlementJournal(path)
    first.close()
    SettlementJournal(path).close()


def test_the_lock_of_a_killed_process_is_free_at_once(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(JournalInUse, match=f"pid {proc.pid}"):
            SettlementJournal(path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    SettlementJournal(path).close()  # no stale pid file to clean up by hand


def test_remove_deletes_an_empty_journal_and_refuses_one_with_entries(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = SettlementJournal(path)
    entry = journal.add(_commit(1))
    with pytest.raises(ValueError, match="still holds 1"):
        journal.remove()
    journal.done(entry)
    journal.remove()
    assert not [p for p in tmp_path.iterdir()], "db, WAL, shared memory and lock file are all gone"


def test_adoption_moves_a_dead_replicas_entries_and_leaves_a_live_ones(tmp_path: Path) -> None:
    base = tmp_path / "router-settlements.sqlite3"
    dead = SettlementJournal(tmp_path / "router-settlements.a.sqlite3")
    for n in (1, 2):
        dead.add(_commit(n))
    dead.close()  # as if its process had died: unlocked, entries kept
    live = SettlementJournal(tmp_path / "router-settlements.b.sqlite3")
    live.add(_commit(3))
    legacy = SettlementJournal(base)  # a router before replica ids wrote here
    legacy.add(_commit(4))
    legacy.close()
    own = SettlementJournal(tmp_path / "router-settlements.c.sqlite3")
    assert len(sibling_journals(base, own.path or base)) == 3

    assert adopt_orphans(base, own) == 3
    assert _ids(own) == ["r_1", "r_2", "r_4"]
    assert not (tmp_path / "router-settlements.a.sqlite3").exists() and not base.exists()
    assert not lock_path(base).exists()
    assert _ids(live) == ["r_3"]  # the live replica keeps its own
    assert adopt_orphans(base, own) == 0  # nothing left to adopt
    live.close()
    own.close()
