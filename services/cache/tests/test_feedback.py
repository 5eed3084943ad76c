"""Wrong-hit feedback bookkeeping: only the key that received a hit may
report it, once, within the window, at a bounded rate (injected clock)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rationer.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from rationer.platform.clock import FixedClock
from services.cache.feedback import FeedbackBook


def book(**kw: object) -> tuple[FeedbackBook, FixedClock]:
    clock = FixedClock(1_000_000.0)
    return FeedbackBook(clock, **kw), clock  # type: ignore[arg-type]


def test_only_the_receiving_key_of_the_same_tenant_may_report_and_only_once() -> None:
    b, _ = book()
    b.record("acme", "rq-1", "key-a", "entry-1")
    with pytest.raises(PermissionDenied, match="another API key"):
        b.report("acme", "key-b", "rq-1")
    with pytest.raises(NotFound):
        b.report("globex", "key-a", "rq-1")  # another tenant cannot even see it
    first = b.report("acme", "key-a", "rq-1")
    assert first.entry_id == "entry-1" and not first.already_reported
    assert b.report("acme", "key-a", "rq-1").already_reported


def test_a_hit_without_ids_or_past_the_window_cannot_be_reported() -> None:
    b, clock = book(window_s=3600)
    b.record("acme", "", "key-a", "entry-1")
    b.record("acme", "rq-2", "key-a", "entry-2")
    with pytest.raises(NotFound):
        b.report("acme", "key-a", "rq-1")  # recorded without a request id: not reportable
    clock.advance(3601)
    with pytest.raises(NotFound, match="last 1 h"):
        b.report("acme", "key-a", "rq-2")


@pytest.mark.parametrize(("rid", "key"), [("", "k"), ("   ", "k"), ("r", ""), ("x" * 129, "k"), ("a\nb", "k")])
def test_bad_ids_are_invalid_arguments(rid: str, key: str) -> None:
    b, _ = book()
    with pytest.raises(InvalidArgument):
        b.report("acme", key, rid)


def test_reports_are_rate_limited_per_key_and_refill_with_the_clock() -> None:
    b, clock = book(per_minute=3)
    for i in range(5):
        b.record("acme", f"rq-{i}", "key-a", f"e{i}")
    for i in range(3):
        b.report("acme", "key-a", f"rq-{i}")
    with pytest.raises(ResourceExhausted, match="retry in 20 s") as exc:
        b.report("acme", "key-a", "rq-3")
    assert exc.value.retry_after_s == pytest.approx(20.0)
    with pytest.raises(NotFound):
        b.report("acme", "key-b", "rq-unknown")  # another key has its own budget
    clock.advance(20)
    assert b.report("acme", "key-a", "rq-3").entry_id == "e3"


def test_memory_is_bounded() -> None:
    b, _ = book(max_hits=3)
    for i in range(5):
        b.record("acme", f"rq-{i}", "k", f"e{i}")
    with pytest.raises(NotFound):
        b.report("acme", "k", "rq-0")
    assert b.report("acme", "k", "rq-4").entry_id == "e4"


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["t1", "t2"]), st.sampled_from(["k1", "k2", "k3"]),
                          st.sampled_from(["r1", "r2", "r3"])), min_size=1, max_size=30))  # fmt: skip
def test_a_report_is_accepted_only_from_whoever_received_the_latest_hit(ops: list[tuple[str, str, str]]) -> None:
    b, clock = book(per_minute=1000)
    received: dict[tuple[str, str], str] = {}
    for i, (tenant, key, rid) in enumerate(ops):
        if i % 2 == 0:
            b.record(tenant, rid, key, f"{tenant}-{rid}-{i}")
            received[(tenant, rid)] = key
            continue
        clock.advance(1)
        owner = received.get((tenant, rid))
        if owner is None:
            with pytest.raises(NotFound):
                b.report(tenant, key, rid)
        elif owner != key:
            with pytest.raises(PermissionDenied):
                b.report(tenant, key, rid)
        else:
            assert b.report(tenant, key, rid).entry_id.startswith(f"{tenant}-{rid}-")
