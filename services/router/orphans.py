"""Journals other router replicas left behind: drain one into the ledger, or adopt a directory's.

A router replica that dies and never comes back leaves two things: holds,
which the ledger's sweeper expires after their TTL (nothing to do here), and
the settlements in its journal that the ledger never confirmed: usage of
answers already given, the only copy of which is that file. Either path here
gets them billed, exactly once, because every entry carries its ledger
idempotency key (Commit: the reservation id; RecordCacheHit: the record id):

- ``drain_journal`` (``rationer router drain-journal PATH``) sends one
  journal's entries to the ledger and deletes the file once it is empty;
- ``adopt_orphans`` (``adopt_orphaned_journals``, on start) moves every
  unlocked sibling journal's entries into this replica's own journal, whose
  drainer then sends them. Moving is local and takes milliseconds, so the
  orphan's lock is never held long enough to keep its owner, if it does come
  back, from starting. A crash between copying an entry and deleting it
  leaves it in two journals; both replay it and the ledger takes it once.

Both refuse a journal another live process holds (``JournalInUse``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from rationer.errors import NotFound
from services.router.journal import SettlementJournal
from services.router.journal_lock import JournalInUse
from services.router.ports import LedgerPort
from services.router.settlement import Settler

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DrainReport:
    path: str
    found: int  # entries in the journal when it was opened
    landed: int  # taken by the ledger (a replay of one it had is taken too, billed once)
    refused: int  # definitively refused by the ledger (logged); dropped
    left: int  # still in the journal: the ledger stayed away
    removed: bool  # the empty journal's files were deleted


async def drain_journal(path: Path, ledger: LedgerPort, *, wait_s: float = 30.0) -> DrainReport:
    """Send every entry of the journal at ``path`` to the ledger, retrying for up to ``wait_s``."""
    if not path.is_file():
        raise NotFound(f"no settlement journal at {path}")
    journal = SettlementJournal(path)  # JournalInUse while its router lives
    try:
        found = len(journal)
        settler = Settler(ledger, journal, asyncio.ensure_future)
        landed = refused = 0
        give_up_at, delay = time.monotonic() + wait_s, 0.25
        while True:
            count = await settler.replay_pending()
            landed, refused = landed + count.landed, refused + count.refused
            if not count.stopped or time.monotonic() + delay > give_up_at:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        left = len(journal)
    except BaseException:
        journal.close()
        raise
    if left:
        journal.close()
    else:
        journal.remove()
    log.info("journal drained", path=str(path), found=found, landed=landed, refused=refused, left=left)
    return DrainReport(str(path), found, landed, refused, left, removed=not left)


def sibling_journals(base: Path, own: Path) -> list[Path]:
    """Journals of other replicas next to ``base``: ``<stem><suffix>`` and ``<stem>.*<suffix>``."""
    found = [base] if base.is_file() else []
    found += sorted(base.parent.glob(f"{base.stem}.*{base.suffix}"))
    return [p for p in found if p.is_file() and p.resolve() != own.resolve()]


def adopt_orphans(base: Path, own: SettlementJournal) -> int:
    """Move the entries of every sibling journal no live process holds into ``own``; how many moved."""
    if own.path is None:
        return 0
    moved = 0
    for path in sibling_journals(base, own.path):
        try:
            orphan = SettlementJournal(path)
        except JournalInUse:
            continue  # a live replica's
        try:
            entries = orphan.pending()
            for entry in entries:
                own.add(entry.call)
                orphan.done(entry.entry_id)
        except BaseException:
            orphan.close()  # what is not moved yet stays in the orphan, for the next adopter
            raise
        if len(orphan):
            # Rows this version cannot read stay where they are, for an operator.
            log.error("an orphaned journal keeps entries this version cannot read", path=str(path),
                      left=len(orphan))  # fmt: skip
            orphan.close()
        else:
            orphan.remove()
        if entries:
            log.warning("adopted an orphaned settlement journal", path=str(path), entries=len(entries))
        moved += len(entries)
    return moved
