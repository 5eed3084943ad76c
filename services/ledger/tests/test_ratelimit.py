"""GCRA semantics of the in-process limiter (the Redis script is tested end to end)."""

from __future__ import annotations

from services.ledger.ratelimit import InProcessRateLimiter, RateCheck


async def test_burst_then_deny_and_all_or_nothing() -> None:
    rl = InProcessRateLimiter()
    rpm = RateCheck("rpm:key:k", 5, 1)
    for _ in range(5):
        assert await rl.acquire([rpm]) is None
    denial = await rl.acquire([rpm])
    assert denial is not None and denial.limit_id == "rpm:key:k"
    assert 0 < denial.retry_after_s <= 12.0  # one emission interval (60 s / 5)
    # a denied multi-limit request consumes nothing from the limits that passed
    tpm = RateCheck("tpm:key:j", 100, 60)
    assert await rl.acquire([tpm]) is None
    blocked = await rl.acquire([RateCheck("tpm:key:j", 100, 30), RateCheck("rpm:key:k", 5, 1)])
    assert blocked is not None and blocked.limit_id == "rpm:key:k"
    assert await rl.acquire([RateCheck("tpm:key:j", 100, 40)]) is None  # 60 + 40 fits: nothing was taken


async def test_cost_above_whole_allowance_is_never_allowed() -> None:
    denial = await InProcessRateLimiter().acquire([RateCheck("tpm:team:t", 100, 101)])
    assert denial is not None and denial.retry_after_s == float("inf")


async def test_refund_gives_back_capacity_but_never_more_than_a_fresh_minute() -> None:
    rl = InProcessRateLimiter()
    assert await rl.acquire([RateCheck("tpm:key:k", 1000, 800)]) is None
    assert await rl.acquire([RateCheck("tpm:key:k", 1000, 800)]) is not None
    await rl.refund([RateCheck("tpm:key:k", 1000, 700)])  # the call used 100 of its 800
    assert await rl.acquire([RateCheck("tpm:key:k", 1000, 800)]) is None
    # Refunding more than was taken cannot build up credit beyond one minute.
    await rl.refund([RateCheck("tpm:key:k", 1000, 10_000)])
    assert await rl.acquire([RateCheck("tpm:key:k", 1000, 1000)]) is None
    assert await rl.acquire([RateCheck("tpm:key:k", 1000, 50)]) is not None
    await rl.refund([RateCheck("tpm:key:unknown", 1000, 5)])  # nothing to refund: no effect
    assert await rl.acquire([RateCheck("tpm:key:unknown", 1000, 1000)]) is None
