"""Wrong-hit feedback bookkeeping: only the key that received a hit may
report it, once, within the window, at a bounded rate (injected clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rationer.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from rationer.platform.clock import FixedClock
from services.cache.feedback import FeedbackBook, ReceiptLog, SqliteReceipts
from services.cache.pgvector_backend import PgvectorBackend, PgvectorConfig
from testsupport.pgvector import fresh_schema


def book(**kw: object) -> tuple[FeedbackBook, FixedClock]:
    clock = FixedClock(1_000_000.0)
    return FeedbackBook(clock, **kw), clock  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite", "pgvector"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReceiptLog | None]:
    """Where the receipts live: memory, the embedded SQLite file, or the shared database."""
    if request.param == "memory":
        yield None
    elif request.param == "sqlite":
        yield SqliteReceipts(tmp_path / "receipts.sqlite3")
    else:
        backend = PgvectorBackend(PgvectorConfig(dsn=request.getfixturevalue("pgvector").dsn, schema=fresh_schema()))
        asyncio.run(backend.start())
        yield backend.receipt_log()
        backend.close(save=False)


async def test_only_the_receiving_key_of_the_same_tenant_may_report_and_only_once(log: ReceiptLog | None) -> None:
    b, _ = book(log=log)
    await b.record("acme", "rq-1", "key-a", "entry-1")
    with pytest.raises(PermissionDenied, match="another API key"):
        await b.report("acme", "key-b", "rq-1")
    with pytest.raises(NotFound):
        await b.report("globex", "key-a", "rq-1")  # another tenant cannot even see it
    first = await b.report("acme", "key-a", "rq-1")
    assert first.entry_id == "entry-1" and not first.already_reported
    assert (await b.report("acme", "key-a", "rq-1")).already_reported


async def test_a_hit_without_ids_or_past_the_window_cannot_be_reported(log: ReceiptLog | None) -> None:
    b, clock = book(window_s=3600, log=log)
    await b.record("acme", "", "key-a", "entry-1")
    await b.record("acme", "rq-2", "key-a", "entry-2")
    with pytest.raises(NotFound):
        await b.report("acme", "key-a", "rq-1")  # recorded without a request id: not reportable
    clock.advance(3601)
    with pytest.raises(NotFound, match="last 1 h"):
        await b.report("acme", "key-a", "rq-2")


@pytest.mark.parametrize(("rid", "key"), [("", "k"), ("   ", "k"), ("r", ""), ("x" * 129, "k"), ("a\nb", "k")])
async def test_bad_ids_are_invalid_arguments(rid: str, key: str) -> None:
    b, _ = book()
    with pytest.raises(InvalidArgument):
        await b.report("acme", key, rid)


async def test_reports_are_rate_limited_per_key_and_refill_with_the_clock(log: ReceiptLog | None) -> None:
    b, clock = book(per_minute=3, log=log)
    for i in range(5):
        await b.record("acme", f"rq-{i}", "key-a", f"e{i}")
    for i in range(3):
        await b.report("acme", "key-a", f"rq-{i}")
    with pytest.raises(ResourceExhausted, match="retry in 20 s") as exc:
        await b.report("acme", "key-a", "rq-3")
    assert exc.value.retry_after_s == pytest.approx(20.0)
    with pytest.raises(NotFound):
        await b.report("acme", "key-b", "rq-unknown")  # another key has its own budget
    clock.advance(20)
    assert (await b.report("acme", "key-a", "rq-3")).entry_id == "e3"


async def test_memory_is_bounded() -> None:
    b, _ = book(max_hits=3)
    for i in range(5):
        await b.record("acme", f"rq-{i}", "k", f"e{i}")
    with pytest.raises(NotFound):
        await b.report("acme", "k", "rq-0")
    assert (await b.report("acme", "k", "rq-4")).entry_id == "e4"


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["t1", "t2"]), st.sampled_from(["k1", "k2", "k3"]),
                          st.sampled_from(["r1", "r2", "r3"])), min_size=1, max_size=30))  # fmt: skip
async def test_a_report_is_accepted_only_from_whoever_received_the_latest_hit(ops: list[tuple[str, str, str]]) -> None:
    b, clock = book(per_minute=1000)
    received: dict[tuple[str, str], str] = {}
    for i, (tenant, key, rid) in enumerate(ops):
        if i % 2 == 0:
            await b.record(tenant, rid, key, f"{tenant}-{rid}-{i}")
            received[(tenant, rid)] = key
            continue
        clock.advance(1)
        owner = received.get((tenant, rid))
        if owner is None:
            with pytest.raises(NotFound):
                await b.report(tenant, key, rid)
        elif owner != key:
            with pytest.raises(PermissionDenied):
                await b.report(tenant, key, rid)
        else:
            assert (await b.report(tenant, key, rid)).entry_id.startswith(f"{tenant}-{rid}-")
