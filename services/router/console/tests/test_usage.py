"""The pages' sums are exact: no float touches money, and a total is the sum of its rows (property)."""

from __future__ import annotations

from dataclasses import fields

from hypothesis import given
from hypothesis import strategies as st

from services.ledger.models import UsageRow
from services.ledger.report import usd
from services.router.console.usage import grouped, numbers, total

NANO = st.integers(0, 10**15)  # up to a million dollars per row
rows = st.lists(st.builds(UsageRow, group=st.fixed_dictionaries({"team": st.sampled_from(["a/x", "a/y", ""])}),
                          requests=st.integers(0, 10**6), prompt_tokens=st.integers(0, 10**9),
                          completion_tokens=st.integers(0, 10**9), cost=NANO, counterfactual_cost=NANO,
                          cache_hits=st.integers(0, 10**6), overage=NANO, cache_savings=NANO),
                max_size=30)  # fmt: skip


@given(rows)
def test_a_total_is_the_exact_sum_of_its_rows(rs: list[UsageRow]) -> None:
    t = total(rs)
    for f in fields(UsageRow):
        if f.name != "group":
            assert getattr(t, f.name) == sum(getattr(r, f.name) for r in rs)
    n = numbers(t)
    assert n["spend_nano_usd"] == t.cost and n["spend_usd"] == usd(t.cost)
    assert n["savings_nano_usd"] == n["cache_savings_nano_usd"] + n["routing_savings_nano_usd"]  # type: ignore[operator]
    assert n["tokens"] == t.prompt_tokens + t.completion_tokens


@given(rows)
def test_rows_keep_their_ids_and_the_clis_labels(rs: list[UsageRow]) -> None:
    out = grouped(rs, "team")
    assert [o["id"] for o in out] == [r.group["team"] for r in rs]
    assert all(o["label"] == (r.group["team"] or "(none)") for o, r in zip(out, rs, strict=True))
