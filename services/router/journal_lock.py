"""One live process per settlement journal: an OS file lock next to the journal.

Two routers appending to one journal would each replay the other's entries
while the other is still sending them (harmless for money, since the ledger
dedups, but each would also delete rows the other still needs) and, worse,
a replica id copied by mistake would make two replicas look like one. So a
journal is opened only under an exclusive ``flock`` on ``<journal>.lock``,
held for as long as the journal is open. The kernel drops it when the
process dies, however it dies (``kill -9`` included), so a dead replica's
journal is free for the next router or for ``rationer router drain-journal``
at once, without stale-pid guessing.

The lock file may be removed by the holder when it deletes a drained
journal, so a lock taken on a file that was unlinked meanwhile is retried
on the new file (the inode check below): two processes can never both hold
"the" lock of one path.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import IO

from rationer.errors import FailedPrecondition


class JournalInUse(FailedPrecondition):
    """Another live process holds the journal's lock."""


def lock_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".lock")


class JournalLock:
    """An exclusive, process-lifetime lock on one journal path."""

    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self.path = lock_path(journal)
        self._file: IO[str] | None = None

    def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait_s`` for a holder that lets go; JournalInUse if none does."""
        give_up_at = time.monotonic() + wait_s
        while True:
            f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the journal's lifetime
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(f)
                f.close()
                if time.monotonic() < give_up_at:
                    time.sleep(0.05)
                    continue
                raise JournalInUse(
                    f"the settlement journal {self.journal} is in use by another live router process"
                    f"{f' (pid {holder})' if holder else ''}; give each router replica its own "
                    "replica_id (RATIONER_ROUTER__REPLICA_ID) or settlement_journal path"
                ) from None
            if _same_file(f, self.path):
                break
            f.close()  # the holder before us removed this lock file: lock the new one
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def release(self, *, remove: bool = False) -> None:
        if self._file is None:
            return
        if remove:
            # Unlinked while still held, so a process that opens the path
            # after this gets a new file and the inode check passes there.
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._file.close()
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None


def _same_file(f: IO[str], path: Path) -> bool:
    try:
        return os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _holder(f: IO[str]) -> str:
    with contextlib.suppress(OSError, ValueError):
        f.seek(0)
        text = f.read(32).strip()
        return text if text.isdigit() else ""
    return ""
