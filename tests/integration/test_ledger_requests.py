"""The console's ledger side: own keys, key expiry, the Requests log, prompt logging.

On SQLite and PostgreSQL, over real gRPC (the scope property: test_ledger_requests_scope.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rationer.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from rationer.platform.clock import FixedClock
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.calls import PROMPT_MAX_CHARS, CommitCall
from services.ledger.settings import LedgerSettings
from tests.integration.test_ledger_cli import rationer
from testsupport import ledger as tsl
from testsupport.ledger import RunningLedger, cache_hit, make_key, running_ledger, settings_for

START = datetime(2031, 3, 15, 12, tzinfo=UTC)
S = 1_000_000  # us per second


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerSettings:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else ""
    return settings_for(request.param, tmp_path, dsn)


async def _call(led: RunningLedger, k: tsl.TestKey, rid: str, **kw: object) -> str:
    """One authorized and committed call; returns its event id."""
    r = await led.client.authorize(k.key_id, "local-small", prompt_tokens=100, max_completion_tokens=50,
                                   request_id=rid)  # fmt: skip
    res = await led.client.commit(CommitCall(r.reservation_id, k.key_id, 100, 50, **kw))  # type: ignore[arg-type]
    return res.event.event_id


async def test_key_list_is_the_owners_own_and_finops_reads_all(settings: LedgerSettings) -> None:
    async with running_ledger(settings) as led:
        alice = await make_key(led.admin, org="acme", team="eng", email="a@acme.com", role="viewer")
        alice2 = await led.admin.create_key(user_id=alice.user_id, name="second")
        bob = await make_key(led.admin, org="acme", team="eng", email="b@acme.com")
        svc = await led.admin.create_key(team_id=bob.team_id, service_account="batch")
        fin = await led.admin.create_key(user_id=bob.user_id, role="finops")
        mine = {alice.key_id, alice2.key.key_id}
        async with LedgerAdminClient(led.target, alice.secret) as a:
            assert {k.key_id for k in await a.list_keys()} == mine
            assert await a.list_keys(team_id="acme/other") == []
            for change in (a.revoke_key(alice2.key.key_id), a.update_key(alice.key_id, role="admin"),
                           a.create_key(user_id=alice.user_id)):  # fmt: skip
                with pytest.raises(PermissionDenied, match="role 'viewer'"):
                    await change
        async with LedgerAdminClient(led.target, svc.secret) as s:
            assert [k.key_id for k in await s.list_keys()] == [svc.key.key_id]  # a service key: itself
        async with LedgerAdminClient(led.target, fin.secret) as f:
            listed = await f.list_keys()
            assert {alice.key_id, bob.key_id, svc.key.key_id} <= {k.key_id for k in listed}
            assert all(not hasattr(k, "secret") for k in listed)  # ApiKey has a prefix, never the secret
            with pytest.raises(PermissionDenied, match="role 'finops'"):
                await f.update_key(alice.key_id, allowed_tiers=["local-small"])


async def test_update_key_sets_and_clears_expiry_audited(settings: LedgerSettings) -> None:
    clock = FixedClock(START)
    async with running_ledger(settings, clock=clock) as led:
        k = await make_key(led.admin)
        now = int(clock.time() * S)
        with pytest.raises(InvalidArgument, match=r"not in the future.*revoke it"):
            await led.admin.update_key(k.key_id, expires_at_us=now - S)
        with pytest.raises(InvalidArgument, match="within 36500 days"):
            await led.admin.update_key(k.key_id, expires_at_us=now + 101 * 365 * 86_400 * S)
        with pytest.raises(NotFound, match="k_nosuchkey"):
            await led.admin.update_key("k_nosuchkey", expires_at_us=now + S)
        out = await led.admin.update_key(k.key_id, expires_at_us=now + 3600 * S)
        assert out.expires_at.seconds == now // S + 3600
        assert (await led.client.authenticate(k.secret)).expires_at_us == now + 3600 * S
        clock.advance(3601)
        led.deps.ledger.invalidate()
        with pytest.raises(Unauthenticated, match="expired at"):
            await led.client.authenticate(k.secret)
        cleared = await led.admin.update_key(k.key_id, expires_at_us=None)
        assert not cleared.HasField("expires_at")
        assert (await led.client.authenticate(k.secret)).expires_at_us is None
        entries = await led.admin.list_audit(action="keys.update")
        assert json.loads(entries[0].after_json)["expires_at_us"] == now + 3600 * S
        assert json.loads(entries[1].before_json)["expires_at_us"] == now + 3600 * S
        assert json.loads(entries[1].after_json)["expires_at_us"] is None
        assert all(k.secret not in e.after_json for e in entries)


async def _traffic(led: RunningLedger, clock: FixedClock) -> dict[str, tsl.TestKey]:
    keys = {
        "eng": await make_key(led.admin, org="acme", team="eng", email="e@acme.com"),
        "ops": await make_key(led.admin, org="acme", team="ops", email="o@acme.com"),
        "glx": await make_key(led.admin, org="globex", team="eng", email="g@globex.com"),
    }
    for i in range(5):
        for name, k in keys.items():
            clock.advance(1)
            await _call(led, k, f"{name}-{i}", latency_ms=100 + i, finish_note="client_disconnected" if i == 4 else "")
    clock.advance(1)
    await led.client.record_cache_hit(cache_hit(keys["eng"].key_id, "eng-hit", tier="local-small", model="m",
                                                prompt_tokens=10, completion_tokens=5, latency_ms=3))  # fmt: skip
    await led.admin.set_budget("key", keys["ops"].key_id, unit="usd", period="monthly", hard_limit=1)
    clock.advance(1)
    with pytest.raises(Exception, match="would exceed"):
        await _call(led, keys["ops"], "ops-denied")
    return keys


async def test_requests_are_scoped_filtered_and_paged(settings: LedgerSettings) -> None:
    clock = FixedClock(START)
    async with running_ledger(settings, clock=clock) as led:
        keys = await _traffic(led, clock)
        page = await led.admin.list_requests(page_size=4)
        assert len(page.requests) == 4 and page.next_cursor
        seen = [r.event.event_id for r in page.requests]
        times = [r.event.time.seconds for r in page.requests]
        assert times == sorted(times, reverse=True)
        while page.next_cursor:
            page = await led.admin.list_requests(page_size=4, cursor=page.next_cursor)
            seen += [r.event.event_id for r in page.requests]
        assert len(seen) == len(set(seen)) == 17  # 15 calls, 1 cache hit, 1 denial; no alerts or signals
        everything = (await led.admin.list_requests(page_size=500)).requests
        assert [r.event.event_id for r in everything] == seen
        latest = everything[0].event
        assert (latest.kind, latest.status, latest.latency_ms) == ("denied", 429, 0)
        hit = everything[1].event
        assert (hit.kind, hit.cache_hit, hit.status, hit.latency_ms) == ("cache_hit", True, 200, 3)
        assert hit.counterfactual_cost.nano_usd > hit.cost.nano_usd == 0  # savings shown per call

        def ids(resp: object) -> set[str]:
            return {r.event.event_id for r in resp.requests}  # type: ignore[attr-defined]

        partial = await led.admin.list_requests(status=499)
        assert len(partial.requests) == 3 and all("finish=client_disconnected" in r.event.detail
                                                   for r in partial.requests)  # fmt: skip
        assert len((await led.admin.list_requests(cache="hit")).requests) == 1
        assert len((await led.admin.list_requests(cache="miss")).requests) == 16
        assert len((await led.admin.list_requests(key_id=keys["glx"].key_id)).requests) == 5
        assert len((await led.admin.list_requests(team_id="acme/ops")).requests) == 6
        assert len((await led.admin.list_requests(org_id="acme")).requests) == 12
        assert ids(await led.admin.list_requests(tier="local-small", model="no-such")) == set()
        t0 = int(START.timestamp() * S)
        window = await led.admin.list_requests(start_us=t0 + 2 * S, end_us=t0 + 5 * S)
        assert [r.event.time.seconds - t0 // S for r in window.requests] == [4, 3, 2]
        await _scoped(led, keys)
        await _bad_input(led, keys)


async def _scoped(led: RunningLedger, keys: dict[str, tsl.TestKey]) -> None:
    eng = keys["eng"]
    viewer = await led.admin.create_key(user_id=eng.user_id, role="viewer")
    finops = await led.admin.create_key(user_id=eng.user_id, role="finops")
    async with LedgerAdminClient(led.target, viewer.secret) as v:
        rows = (await v.list_requests(page_size=500)).requests
        assert {r.event.team_id for r in rows} == {eng.team_id} and len(rows) == 6
        for other in ({"team_id": "acme/ops"}, {"org_id": "globex"}):
            with pytest.raises(PermissionDenied, match="its own team 'acme/eng' only"):
                await v.list_requests(**other)  # type: ignore[arg-type]
        with pytest.raises(NotFound, match="no API key"):  # another team's key looks like no key
            await v.list_requests(key_id=keys["ops"].key_id)
    async with LedgerAdminClient(led.target, eng.secret) as m:  # member: its org
        assert {r.event.org_id for r in (await m.list_requests(page_size=500)).requests} == {"acme"}
        with pytest.raises(PermissionDenied, match="its own org 'acme' only"):
            await m.list_requests(team_id="globex/eng")
    async with LedgerAdminClient(led.target, finops.secret) as f:
        assert len((await f.list_requests(page_size=500)).requests) == 17


async def _bad_input(led: RunningLedger, keys: dict[str, tsl.TestKey]) -> None:
    for kw, match in (({"page_size": 501}, "page_size must be between 1 and 500"),
                      ({"cursor": "not-a-cursor!"}, "not one this ledger handed out"),
                      ({"cursor": "MTIzOg"}, "not one this ledger handed out"),
                      ({"cache": "maybe"}, "cache must be hit, miss"),
                      ({"status": 42}, "HTTP status"),
                      ({"start_us": 10 * S, "end_us": 5 * S}, "start must be before")):  # fmt: skip
        with pytest.raises(InvalidArgument, match=match):
            await led.admin.list_requests(**kw)
    with pytest.raises(NotFound):
        await led.admin.list_requests(key_id="k_0000000000000000")


def _db_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


async def test_prompt_logging_off_by_default_on_when_set_and_audited(settings: LedgerSettings) -> None:
    clock = FixedClock(START)
    async with running_ledger(settings, clock=clock) as led:
        k = await make_key(led.admin)
        assert not (await led.client.authenticate(k.secret)).log_prompts
        # A router that (wrongly, or from a stale cache) sends a prompt while logging is off stores nothing.
        off = "PROMPT-MARKER-OFF " + "x" * 50
        await _call(led, k, "off-1", prompt_text=off)
        await led.client.record_cache_hit(cache_hit(k.key_id, "off-hit", tier="local-small", prompt_text=off))
        rows = (await led.admin.list_requests()).requests
        assert rows and all(r.prompt_text == "" for r in rows)
        with pytest.raises(PermissionDenied, match="may not change org settings"):
            async with LedgerAdminClient(led.target, k.secret) as member:
                await member.set_org_settings(k.org_id, log_prompts=True)
        with pytest.raises(NotFound, match="org 'nope' does not exist"):
            await led.admin.set_org_settings("nope", log_prompts=True)
        org = await led.admin.set_org_settings(k.org_id, log_prompts=True)
        assert org.log_prompts and (await led.client.authenticate(k.secret)).log_prompts
        on = "PROMPT-MARKER-ON <script>alert(1)</script> " + "y" * PROMPT_MAX_CHARS
        clock.advance(1)
        await _call(led, k, "on-1", prompt_text=on)
        first = (await led.admin.list_requests(page_size=1)).requests[0]
        assert first.prompt_text == on[:PROMPT_MAX_CHARS] and first.prompt_truncated
        (entry,) = await led.admin.list_audit(action="orgs.settings")
        assert json.loads(entry.before_json)["log_prompts"] is False
        assert json.loads(entry.after_json)["log_prompts"] is True
        await led.admin.set_org_settings(k.org_id, log_prompts=False)
        clock.advance(1)
        await _call(led, k, "off-2", prompt_text="PROMPT-MARKER-AFTER")
        assert (await led.admin.list_requests(page_size=1)).requests[0].prompt_text == ""
        raw = await _raw_text(led, settings)
        assert b"PROMPT-MARKER-OFF" not in raw and b"PROMPT-MARKER-AFTER" not in raw
        assert b"PROMPT-MARKER-ON" in raw


async def _raw_text(led: RunningLedger, settings: LedgerSettings) -> bytes:
    """Every byte the ledger stored: the SQLite files (WAL included), or every text column on PostgreSQL."""
    if settings.backend == "sqlite":
        return _db_bytes(Path(settings.sqlite_path))

    def dump():  # type: ignore[no-untyped-def]
        out = []
        for table in ("events", "event_prompts", "audit_log", "reservations"):
            rows = yield (f"SELECT * FROM {table}", ())
            out.append(repr(rows))
        return "".join(out)

    return str(await led.deps.ledger.store.read(dump)).encode()


async def test_cli_sets_expiry_and_prompt_logging(tmp_path: Path) -> None:
    async with running_ledger(settings_for("sqlite", tmp_path), clock=FixedClock(START)) as led:
        k = await make_key(led.admin)
        rc, out, err = await rationer(led.target, "keys", "update", k.key_id, "--expires", "2031-04-01")
        assert rc == 0 and "expires=2031-04-01T00:00:00+00:00" in out, err
        rc, out, err = await rationer(led.target, "keys", "update", k.key_id, "--no-expiry")
        assert rc == 0 and "expires=" not in out, err
        rc, _, err = await rationer(led.target, "keys", "update", k.key_id, "--expires", "next tuesday")
        assert rc == 2 and "is not a date" in err
        rc, _, err = await rationer(led.target, "keys", "update", k.key_id, "--expires", "2020-01-01")
        assert rc != 0 and "INVALID_ARGUMENT" in err and "revoke it" in err
        rc, out, err = await rationer(led.target, "orgs", "prompt-logging", k.org_id, "--on")
        assert rc == 0 and out.strip() == f"org {k.org_id}: prompt logging on", err
        rc, _, err = await rationer(led.target, "orgs", "prompt-logging", "nope", "--off")
        assert rc != 0 and "NOT_FOUND" in err
