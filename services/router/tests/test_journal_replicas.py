"""One journal per router replica: derived paths, the OS lock, adopting a dead replica's journal."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from rationer.errors import FailedPrecondition
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


def test_a_file_that_is_not_a_journal_is_refused_and_left_unlocked(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite3"
    path.write_text("not a database, but long enough for SQLite to read a header from it" * 4)
    with pytest.raises(FailedPrecondition, match="is not a settlement journal the router can open"):
        SettlementJournal(path)
    with pytest.raises(FailedPrecondition, match="is not a settlement journal"):
        SettlementJournal(path)  # the same refusal, not "in use": the first attempt let go of its lock


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


class _CrashingJournal(SettlementJournal):
    """A journal whose process "dies" (raises) on the n-th add: adoption interrupted midway."""

    def __init__(self, path: Path, crash_at: int) -> None:
        super().__init__(path)
        self._left = crash_at

    def add(self, call: CommitCall) -> int:  # type: ignore[override]
        if self._left == 0:
            raise RuntimeError("killed mid-adoption")
        self._left -= 1
        return super().add(call)


def _all_ids(directory: Path) -> list[str]:
    ids: list[str] = []
    for path in sorted(directory.glob("*.sqlite3")):
        journal = SettlementJournal(path)
        ids += _ids(journal)
        journal.close()
    return ids


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 4), min_size=1, max_size=4), crash_at=st.integers(0, 12))
def test_adoption_killed_at_any_point_loses_no_entry_and_invents_none(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], crash_at: int
) -> None:
    """Invariant: after any interrupted adoption, every acknowledged entry is still in some journal
    (possibly two: the ledger's idempotency key bills it once), and a later adoption gathers them all."""
    d = tmp_path_factory.mktemp("adopt")
    base = d / "router-settlements.sqlite3"
    acknowledged: set[str] = set()
    for r, size in enumerate(sizes):
        orphan = SettlementJournal(d / f"router-settlements.dead{r}.sqlite3")
        for n in range(size):
            call = CommitCall(reservation_id=f"res-{r}-{n}", key_id="k_1", prompt_tokens=1, completion_tokens=n)
            orphan.add(call)
            acknowledged.add(call.reservation_id)
        orphan.close()
    adopter = _CrashingJournal(d / "router-settlements.b.sqlite3", crash_at)
    with contextlib.suppress(RuntimeError):
        adopt_orphans(base, adopter)
    adopter.close()
    assert set(_all_ids(d)) == acknowledged  # nothing lost, nothing new
    later_name = "router-settlements.c.sqlite3"
    later = SettlementJournal(d / later_name)
    adopt_orphans(base, later)
    assert set(_ids(later)) == acknowledged
    later.close()
    assert [p.name for p in d.glob("*.sqlite3")] == [later_name]  # every other journal was emptied and removed
