"""Rate limits (GCRA): in-process, and shared in Redis by several ledger replicas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from rationer.errors import ResourceExhausted
from rationer.platform.clock import FixedClock
from services.ledger.calls import CommitCall
from testsupport.ledger import RunningLedger, cache_hit, make_key, running_ledger, settings_for


async def test_in_process_rpm_and_tpm(tmp_path: Path) -> None:
    async with running_ledger(settings_for("sqlite", tmp_path)) as led:
        k = await make_key(led.admin)
        await led.admin.set_rate_limit("key", k.key_id, rpm=3)
        for _ in range(3):
            await led.client.authorize(k.key_id, "local-small", prompt_tokens=1, max_completion_tokens=1)
        with pytest.raises(ResourceExhausted) as exc:
            await led.client.authorize(k.key_id, "local-small", prompt_tokens=1, max_completion_tokens=1)
        assert exc.value.limit_id == f"rpm:key:{k.key_id}"
        assert exc.value.retry_after_s is not None and 0 < exc.value.retry_after_s <= 60
        assert exc.value.resets_at is not None
        t = await make_key(led.admin, team="ml", email="carol@acme.com")
        await led.admin.set_rate_limit("team", t.team_id, tpm=1000)
        await led.client.authorize(t.key_id, "local-small", prompt_tokens=600, max_completion_tokens=200)
        with pytest.raises(ResourceExhausted) as exc:
            await led.client.authorize(t.key_id, "local-small", prompt_tokens=300, max_completion_tokens=0)
        assert exc.value.limit_id == f"tpm:team:{t.team_id}"
        with pytest.raises(ResourceExhausted, match="exceed the whole per-minute allowance"):
            await led.client.authorize(t.key_id, "local-small", prompt_tokens=5000, max_completion_tokens=0)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_two_replicas_share_one_limit_in_redis(
    tmp_path: Path, pg_dsn: str, redis_url: str, redis_prefix: str, backend: str
) -> None:
    # Two SQLite replicas share one database file, as two PostgreSQL ones share a database.
    s = settings_for(backend, tmp_path, pg_dsn, redis_url=redis_url, redis_prefix=redis_prefix,
                     rate_limit_cache_ttl_s=0)
    async with running_ledger(s) as a, running_ledger(s) as b:
        k = await make_key(a.admin)
        await a.admin.set_rate_limit("key", k.key_id, rpm=20)

        async def one(i: int) -> bool:
            client = (a if i % 2 else b).client
            try:
                await client.authorize(k.key_id, "local-small", prompt_tokens=1, max_completion_tokens=1)
            except ResourceExhausted as exc:
                assert exc.limit_id == f"rpm:key:{k.key_id}"
                return False
            return True

        results = await asyncio.gather(*(one(i) for i in range(60)))
        assert sum(results) == 20  # one global limit across both replicas, not 20 each
        with redis.Redis.from_url(redis_url) as r:
            assert r.exists(f"{redis_prefix}rpm:key:{k.key_id}"), "the limit state lives in Redis"


async def _tpm_refunds(led: RunningLedger) -> None:
    k = await make_key(led.admin, org="tpm", team="refund", email="dana@acme.com")
    await led.admin.set_rate_limit("key", k.key_id, tpm=1000)

    async def reserve(request_id: str = "") -> str:
        r = await led.client.authorize(k.key_id, "local-small", prompt_tokens=600, max_completion_tokens=200,
                                       request_id=request_id)  # fmt: skip
        return r.reservation_id

    first = await reserve()
    with pytest.raises(ResourceExhausted):
        await reserve()
    # The call used 100 of its 800 reserved tokens: 700 come back.
    await led.client.commit(CommitCall(first, k.key_id, 60, 40))
    second = await reserve("tpm-retry")
    # An idempotent retry returns the same hold; the limit is not charged twice.
    assert await reserve("tpm-retry") == second
    with pytest.raises(ResourceExhausted):
        await reserve()
    # A released hold used nothing: all of its tokens come back.
    await led.client.release(second, k.key_id)
    await reserve()


async def test_unused_tokens_are_refunded_in_process(tmp_path: Path) -> None:
    async with running_ledger(settings_for("sqlite", tmp_path)) as led:
        await _tpm_refunds(led)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_unused_tokens_are_refunded_in_redis(
    tmp_path: Path, pg_dsn: str, redis_url: str, redis_prefix: str, backend: str
) -> None:
    s = settings_for(backend, tmp_path, pg_dsn, redis_url=redis_url, redis_prefix=redis_prefix)
    async with running_ledger(s) as led:
        await _tpm_refunds(led)


async def test_requests_the_budget_denies_do_not_use_up_the_rate_limit(tmp_path: Path) -> None:
    async with running_ledger(settings_for("sqlite", tmp_path)) as led:
        k = await make_key(led.admin)
        await led.admin.set_rate_limit("key", k.key_id, rpm=2)
        await led.admin.set_budget("key", k.key_id, unit="tokens", period="daily", hard_limit=10)
        for _ in range(5):
            with pytest.raises(ResourceExhausted) as exc:
                await led.client.authorize(k.key_id, "local-small", prompt_tokens=50, max_completion_tokens=50)
            assert exc.value.limit_id.startswith("budget")
        # Both requests of the minute are still there for calls that fit.
        for _ in range(2):
            await led.client.authorize(k.key_id, "local-small", prompt_tokens=2, max_completion_tokens=2)
        with pytest.raises(ResourceExhausted) as exc:
            await led.client.authorize(k.key_id, "local-small", prompt_tokens=2, max_completion_tokens=2)
        assert exc.value.limit_id == f"rpm:key:{k.key_id}"


async def test_in_process_state_survives_a_restart(tmp_path: Path) -> None:
    # No Redis: the limiter's state is persisted in the ledger's SQLite file.
    clock = FixedClock(datetime(2031, 5, 14, 9, 30, tzinfo=UTC))
    s = settings_for("sqlite", tmp_path)
    async with running_ledger(s, clock=clock) as led:
        k = await make_key(led.admin)
        await led.admin.set_rate_limit("key", k.key_id, rpm=3)
        for _ in range(3):
            await led.client.authorize(k.key_id, "local-small", prompt_tokens=1, max_completion_tokens=1)
    clock.advance(10)  # restarted within the same minute, same database file
    async with running_ledger(s, clock=clock) as led:
        with pytest.raises(ResourceExhausted) as exc:
            await led.client.authorize(k.key_id, "local-small", prompt_tokens=1, max_completion_tokens=1)
        assert exc.value.limit_id == f"rpm:key:{k.key_id}"
        assert exc.value.retry_after_s == pytest.approx(10.0)  # the first of the three frees up at 20 s
    clock.advance(10)
    async with running_ledger(s, clock=clock) as led:
        await led.client.authorize(k.key_id, "local-small", prompt_tokens=1, max_completion_tokens=1)


async def test_cache_hits_use_up_the_rate_limits(tmp_path: Path) -> None:
    clock = FixedClock(datetime(2031, 5, 14, 9, 30, tzinfo=UTC))
    async with running_ledger(settings_for("sqlite", tmp_path), clock=clock) as led:
        c = led.client
        k = await make_key(led.admin)
        await led.admin.set_rate_limit("key", k.key_id, rpm=3)
        await c.authorize(k.key_id, "local-small", prompt_tokens=1, max_completion_tokens=1)
        one = await c.record_cache_hit(cache_hit(k.key_id, "h-1", tier="frontier", record_id="a-1"))
        await c.record_cache_hit(cache_hit(k.key_id, "h-2", tier="frontier", record_id="a-2"))
        with pytest.raises(ResourceExhausted) as exc:
            await c.record_cache_hit(cache_hit(k.key_id, "h-3", tier="frontier", record_id="a-3"))
        assert exc.value.limit_id == f"rpm:key:{k.key_id}"
        # A retry of a record that landed is answered though the limit is full,
        # and one that was already served is recorded whatever the limits say.
        again = await c.record_cache_hit(cache_hit(k.key_id, "h-1", tier="frontier", record_id="a-1"))
        assert again.event_id == one.event_id
        await c.record_cache_hit(cache_hit(k.key_id, "h-4", tier="frontier", record_id="a-4", served=True))
        assert len(await led.admin.list_events(kind="cache_hit")) == 3
        # Tokens per minute count the hit's tokens.
        t = await make_key(led.admin, team="ml", email="carol@acme.com")
        await led.admin.set_rate_limit("team", t.team_id, tpm=1000)
        await c.record_cache_hit(cache_hit(t.key_id, "t-1", tier="frontier", prompt_tokens=600, completion_tokens=300,
                                 record_id="b-1"))  # fmt: skip
        with pytest.raises(ResourceExhausted) as exc:
            await c.record_cache_hit(cache_hit(t.key_id, "t-2", tier="frontier", prompt_tokens=200, record_id="b-2"))
        assert exc.value.limit_id == f"tpm:team:{t.team_id}"
