"""Every branch of the request pipeline, against fake ports (tests/fakes.py), in milliseconds."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time

import pytest

from rationer.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from services.ledger.calls import CacheHitCall, CommitCall
from services.router import settlement
from services.router.journal import SettlementJournal
from services.router.tests.fakes import KEY, PRINCIPAL, FakeBackend, Fakes, hit, request
from services.router.types import StreamEvent


async def _events(fakes: Fakes, **kw: object) -> list[StreamEvent]:
    core = fakes.core()
    return [e async for e in core.stream(KEY, request(), request_id="r1", **kw)]  # type: ignore[arg-type]


# ---- unary -----------------------------------------------------------------------


async def test_a_miss_is_held_called_committed_and_cached() -> None:
    fakes = Fakes()
    core = fakes.core()
    text, res = await core.complete(KEY, request(), request_id="r1")
    assert text == "an answer" and (res.tier, res.model, res.cache_hit) == ("small", "small-model", False)
    assert fakes.ledger.holds == [("small", "r1")]  # the first attempt uses the bare request id
    (commit,) = fakes.ledger.commits
    assert (commit.prompt_tokens, commit.completion_tokens, commit.tier, commit.bill_late) == (5, 2, "small", True)
    assert (res.cost_nano_usd, res.savings_nano_usd) == (70, 140)
    assert fakes.cache.lookups == [True, False]  # exact first, then semantic
    await core.drain()
    assert fakes.cache.stored == ["an answer"]
    assert {"auth", "embed", "cache", "headroom", "classify", "authorize", "settle"} <= set(res.stage_ms)


async def test_a_hard_prompt_goes_to_the_dear_tier() -> None:
    fakes = Fakes()
    fakes.scorer.value = 0.9
    _, res = await fakes.core().complete(KEY, request())
    assert res.tier == "big" and res.complexity == 0.9


async def test_an_exact_hit_is_recorded_and_served_without_embedding_or_a_hold() -> None:
    fakes = Fakes()
    fakes.cache.hit = hit()
    text, res = await fakes.core().complete(KEY, request(), request_id="r1")
    assert text == "cached answer" and res.cache_hit and res.cost_nano_usd == 0
    assert res.savings_nano_usd == 4 * 1 + 3 * 2  # the price book's counterfactual
    assert fakes.cache.lookups == [True] and "embed" not in res.stage_ms
    assert fakes.ledger.holds == [] and fakes.ledger.commits == []
    (record,) = fakes.ledger.hits
    assert (record.request_id, record.tier, record.served) == ("r1", "big", False) and record.record_id


async def test_a_semantic_hit_is_found_after_embedding() -> None:
    fakes = Fakes()
    fakes.cache.hit, fakes.cache.exact = hit(), False
    text, res = await fakes.core().complete(KEY, request())
    assert text == "cached answer" and fakes.cache.lookups == [True, False] and "embed" in res.stage_ms


async def test_a_named_tier_with_the_cache_off_needs_no_embedding() -> None:
    fakes = Fakes()
    _, res = await fakes.core().complete(KEY, request(model="big", no_cache=True))
    assert res.tier == "big" and res.complexity == 0.0 and "embed" not in res.stage_ms and not fakes.cache.lookups


async def test_a_budget_denial_downgrades_to_a_cheaper_tier() -> None:
    fakes = Fakes()
    fakes.scorer.value = 0.9
    fakes.ledger.deny["big"] = "budget:team:t"
    _, res = await fakes.core().complete(KEY, request(), request_id="r1")
    assert res.tier == "small" and res.downgraded and res.fallbacks == []
    assert fakes.ledger.holds == [("small", "r1#small")]  # the denied attempt used "r1"


@pytest.mark.parametrize(("limit", "downgrade"), [("rpm:key:k_1", True), ("budget:team:t", False)])
async def test_a_rate_denial_or_downgrade_off_is_the_callers_answer(limit: str, downgrade: bool) -> None:
    fakes = Fakes()
    fakes.scorer.value = 0.9
    fakes.ledger.deny["big"] = limit
    with pytest.raises(ResourceExhausted) as denied:
        await fakes.core(downgrade_on_exhaustion=downgrade).complete(KEY, request())
    assert denied.value.limit_id == limit and fakes.ledger.holds == []


async def test_a_failing_tier_is_released_and_the_next_one_serves() -> None:
    fakes = Fakes()
    fakes.scorer.value = 0.9
    fakes.backends["big"].error = Unavailable("big is down")
    _, res = await fakes.core().complete(KEY, request(), request_id="r1")
    assert res.tier == "small" and res.fallbacks == ["big"]
    assert fakes.ledger.holds == [("big", "r1"), ("small", "r1#small")]
    assert fakes.ledger.releases == [("res_0", "big failed: big is down")]
    assert [c.reservation_id for c in fakes.ledger.commits] == ["res_1"] and fakes.ledger.commits[0].fallbacks == 1


async def test_every_tier_failing_is_unavailable_with_no_hold_left() -> None:
    fakes = Fakes()
    for backend in fakes.backends.values():
        backend.error = Unavailable("down")
    with pytest.raises(Unavailable, match="every allowed tier failed; last error: down"):
        await fakes.core().complete(KEY, request())
    assert len(fakes.ledger.releases) == 2 and fakes.ledger.commits == []


async def test_a_callers_error_from_the_model_releases_the_hold_and_is_not_retried() -> None:
    fakes = Fakes()
    fakes.backends["small"].error = InvalidArgument("bad stop sequence")
    with pytest.raises(InvalidArgument):
        await fakes.core().complete(KEY, request())
    assert fakes.ledger.releases == [("res_0", "caller error, cancel or deadline")]
    assert fakes.backends["big"].calls == 0


async def test_no_usage_from_the_upstream_bills_the_holds_maximum() -> None:
    fakes = Fakes()
    fakes.backends["small"].usage_exact = False
    _, res = await fakes.core().complete(KEY, request(max_tokens=16))
    (commit,) = fakes.ledger.commits
    assert commit.completion_tokens == 16 and commit.prompt_tokens > len("hello") and not res.usage_exact


async def test_an_answer_after_its_hold_expired_is_still_billed() -> None:
    fakes = Fakes()
    fakes.ledger.holds_expired = True  # the ledger takes only a bill_late commit now
    _, res = await fakes.core().complete(KEY, request())
    assert [c.bill_late for c in fakes.ledger.commits] == [True] and res.cost_nano_usd > 0


async def test_a_request_id_another_call_used_is_refused() -> None:
    fakes = Fakes()
    fakes.ledger.replayed = True
    with pytest.raises(AlreadyExists, match="already used by another call"):
        await fakes.core().complete(KEY, request(), request_id="r1")
    assert fakes.ledger.releases == [] and fakes.ledger.commits == []  # that hold is the other call's


async def test_a_deadline_too_short_to_use_is_refused_at_once() -> None:
    fakes = Fakes()
    with pytest.raises(DeadlineExceeded, match="Raise the client timeout"):
        await fakes.core().complete(KEY, request(), deadline=time.monotonic() + 0.001)
    assert fakes.ledger.holds == []


# ---- settlement: outage, journal, replay ---------------------------------------------


async def test_a_ledger_outage_at_commit_serves_the_answer_and_the_journal_lands_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settlement, "retry_settlement", functools.partial(settlement.retry_settlement, attempts=1))
    fakes = Fakes()
    fakes.ledger.settle_failures, fakes.ledger.settle_error = 1, Unavailable
    core = fakes.core()
    text, res = await core.complete(KEY, request())
    assert text == "an answer" and res.settlement_pending and res.cost_nano_usd == 0
    for _ in range(200):
        if not len(core.journal):
            break
        await asyncio.sleep(0.005)
    assert len(core.journal) == 0 and len(fakes.ledger.commits) == 1


async def test_a_journal_left_by_an_earlier_run_is_replayed_once_in_order() -> None:
    journal = SettlementJournal()
    journal.add(CommitCall(reservation_id="res_9", key_id="k_1", prompt_tokens=3, completion_tokens=1))
    journal.add(CacheHitCall(key_id="k_1", request_id="q_1", project="", tier="big", model="m", prompt_tokens=1,
                             completion_tokens=1, record_id="a_1"))  # fmt: skip
    fakes = Fakes()
    core = fakes.core(journal=journal)
    assert core.resume_settlements() == 2
    await core.drain()
    assert [c.reservation_id for c in fakes.ledger.commits] == ["res_9"]
    # A replayed hit was served already: the ledger takes it past any limit.
    assert [(h.record_id, h.served) for h in fakes.ledger.hits] == [("a_1", True)] and not len(journal)


async def test_a_definitive_refusal_drops_the_settlement_from_the_journal() -> None:
    fakes = Fakes()
    fakes.ledger.settle_failures, fakes.ledger.settle_error = 1, FailedPrecondition
    core = fakes.core()
    with pytest.raises(FailedPrecondition):
        await core.complete(KEY, request())
    assert not len(core.journal)


# ---- streamed -------------------------------------------------------------------------


async def test_a_stream_relays_deltas_then_commits_exact_usage() -> None:
    fakes = Fakes()
    events = await _events(fakes)
    assert [e.delta for e in events[:-1]] == ["an ", "answer"] and events[-1].final is not None
    (commit,) = fakes.ledger.commits
    assert (commit.completion_tokens, commit.finish_note) == (2, "") and events[-1].final.usage_exact


async def test_a_streamed_hit_is_one_delta_and_the_result() -> None:
    fakes = Fakes()
    fakes.cache.hit = hit()
    events = await _events(fakes)
    assert events[0].delta == "cached answer" and events[1].final is not None and events[1].final.cache_hit


async def test_a_tier_dying_mid_stream_restarts_on_the_next_one() -> None:
    fakes = Fakes()
    fakes.scorer.value = 0.9
    fakes.backends["big"] = FakeBackend(error=Unavailable("lost"), error_after=1)
    events = await _events(fakes)
    assert [(e.delta, e.restart) for e in events[:-1]] == [("an ", False), ("", True), ("an ", False),
                                                           ("answer", False)]  # fmt: skip
    assert fakes.ledger.releases == [("res_0", "big failed mid-stream: lost")]
    assert events[-1].final is not None and events[-1].final.fallbacks == ["big"]


async def test_without_restart_a_mid_stream_failure_is_unavailable() -> None:
    fakes = Fakes()
    fakes.scorer.value = 0.9
    fakes.backends["big"] = FakeBackend(error=Unavailable("lost"), error_after=1)
    with pytest.raises(Unavailable, match="failed mid-answer"):
        await _events(fakes, allow_restart=False)
    assert fakes.ledger.commits == [] and len(fakes.ledger.releases) == 1


async def test_a_stream_the_client_cuts_is_billed_as_far_as_it_went() -> None:
    fakes = Fakes()
    fakes.backends["small"] = FakeBackend(pieces=("an ", "answer", "more"), hang_after=2)
    core = fakes.core()
    async with contextlib.aclosing(core.stream(KEY, request())) as events:
        assert (await anext(events)).delta == "an "
    (commit,) = fakes.ledger.commits
    # No running count from this upstream: the byte bound of the text delivered.
    assert (commit.completion_tokens, commit.finish_note, commit.bill_late) == (3, "client_disconnected", True)
    assert fakes.ledger.releases == []


async def test_a_running_count_bills_what_was_generated_not_only_what_was_delivered() -> None:
    fakes = Fakes()
    fakes.backends["small"] = FakeBackend(pieces=("a", "b", "c"), hang_after=2, running_usage=True)
    await _cut_while_waiting(fakes)
    (commit,) = fakes.ledger.commits
    assert (commit.completion_tokens, commit.finish_note) == (2, "client_disconnected")


async def test_a_stream_cut_before_any_token_releases_the_hold() -> None:
    fakes = Fakes()
    fakes.backends["small"] = FakeBackend(hang_after=0)
    await _cut_while_waiting(fakes)
    assert fakes.ledger.commits == []
    assert fakes.ledger.releases == [("res_0", "stream ended before any token (client_disconnected)")]


async def _cut_while_waiting(fakes: Fakes) -> None:
    """Read a stream until the upstream stalls, then cancel the reader (a client that hangs up)."""

    async def read() -> None:
        async for _ in fakes.core().stream(KEY, request()):
            pass

    task = asyncio.ensure_future(read())
    await asyncio.wait_for(fakes.backends["small"].hung.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# ---- the façade -----------------------------------------------------------------------


async def test_the_facade_answers_for_the_doors() -> None:
    fakes = Fakes()
    fakes.backends["big"].up = False
    core = fakes.core()
    assert [t.name for t in await core.models_for(KEY)] == ["small", "big"]
    assert core.ready() == ["small"] and core.request_limits.max_tokens_cap == 4096
    report = await core.report_wrong_hit(KEY, "r1")
    assert report.evicted
    principal = await core.principal(KEY)
    out = await core.embed(principal, ["one two", "three"], request_id="e1", project="")
    assert out.vectors.shape == (2, 4) and out.tokens == 3 and not out.settlement_pending
    assert fakes.ledger.holds == [("embeddings", "e1")] and fakes.ledger.commits[0].tier == "embeddings"
    with pytest.raises(InvalidArgument):
        await core.report_wrong_hit(KEY, "")


async def test_a_first_wrong_hit_report_is_counted_by_the_ledger_once() -> None:
    fakes = Fakes()
    core = fakes.core()
    assert (await core.report_wrong_hit(KEY, "r7")).evicted
    again = await core.report_wrong_hit(KEY, "r7")
    assert again.already_reported
    assert fakes.ledger.wrong_hits == [(PRINCIPAL.key_id, "r7")]


async def test_a_ledger_outage_does_not_fail_the_wrong_hit_report() -> None:
    fakes = Fakes()
    fakes.ledger.settle_failures = 1
    core = fakes.core()
    assert (await core.report_wrong_hit(KEY, "r8")).evicted
    assert fakes.ledger.wrong_hits == []
