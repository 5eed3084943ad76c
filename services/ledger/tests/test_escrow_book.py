"""The replica's in-memory view of its slices (services.ledger.escrow.EscrowBook)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.ledger.escrow import EscrowBook
from services.ledger.sql.escrow_refill import Grant


def _book(amounts: dict[str, int], expires: int = 1_000) -> EscrowBook:
    book = EscrowBook()
    book.apply({b: Grant(a, 7, expires, 0.0, {}, room=a, limit=2 * a) for b, a in amounts.items()})
    return book


def test_a_take_is_all_or_nothing_across_the_path() -> None:
    book = _book({"org": 100, "team": 10})
    assert book.try_take("r1", {"org": 50, "team": 10}, 500) == {"org": 7, "team": 7}
    # The team slice is used up: nothing is taken from the org slice either.
    assert book.try_take("r2", {"org": 10, "team": 1}, 500) is None
    assert book.slices["org"].used == 50 and book.slices["team"].used == 10


def test_no_take_from_a_slice_that_expires_before_the_hold_or_is_being_refilled() -> None:
    book = _book({"org": 100}, expires=400)
    assert book.try_take("r1", {"org": 1}, 500) is None  # the hold would outlive the slice
    book = _book({"org": 100})
    book.refilling.add("org")
    assert book.try_take("r1", {"org": 1}, 500) is None
    assert book.try_take("r1", {"missing": 1}, 500) is None  # no slice yet: refill first


def test_settling_moves_charges_out_and_a_refill_replaces_the_view() -> None:
    book = _book({"org": 100})
    book.try_take("r1", {"org": 40}, 500)
    book.try_take("r2", {"org": 40}, 500)
    book.apply_settled("org", 30, ["r1"], 900)  # r1 was charged 30 of its 40 and folded into spent
    s = book.slices["org"]
    assert (s.granted, s.used, s.expires_at) == (70, 40, 1_000)
    book.apply({"org": Grant(60, 8, 2_000, 0.1, {"r2": 40}, room=80, limit=200)})
    assert book.try_take("r3", {"org": 21}, 500) is None and book.try_take("r3", {"org": 20}, 500) == {"org": 8}
    book.forget("r2")  # released here: its rows are gone
    assert book.slices["org"].used == 20
    assert book.fraction({"org": 0}) == (80 - 20) / 200


@given(st.lists(st.tuples(st.sampled_from(["take", "drop", "forget"]), st.integers(0, 9), st.integers(0, 60))))
def test_the_book_counts_exactly_what_its_entries_hold(ops: list[tuple[str, int, int]]) -> None:
    book = _book({"org": 200, "key": 150})
    for op, rid, amt in ops:
        if op == "take":
            book.try_take(f"r{rid}", {"org": amt, "key": amt // 2}, 500)
        elif op == "drop":
            book.drop(f"r{rid}", ["org", "key"])
        else:
            book.forget(f"r{rid}")
        for s in book.slices.values():
            assert s.used == sum(s.entries.values()) <= s.granted
