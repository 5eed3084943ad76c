"""Budget alerts and webhooks (issue 15) over real gRPC, on SQLite and PostgreSQL, delivered to a
real aiohttp receiver on loopback. The deliverer is driven by hand with a FixedClock (retries move it).

Two-replica and property tests: test_ledger_alerts_replicas.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rationer.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from rationer.platform.clock import FixedClock
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.calls import CommitCall
from services.ledger.settings import LedgerSettings
from testsupport import ledger as tsl
from testsupport.ledger import RunningLedger, make_key, running_ledger, settings_for
from testsupport.webhooks import webhook_receiver

START = datetime(2031, 3, 15, 12, tzinfo=UTC)
PER_CALL = 2000  # nano-USD: 100 prompt + 50 completion tokens on local-small


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerSettings:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else ""
    return settings_for(request.param, tmp_path, dsn, webhook_backoff_s=10, webhook_max_attempts=3)


async def spend(led: RunningLedger, k: tsl.TestKey, n: int = 1) -> None:
    for _ in range(n):
        r = await led.client.authorize(k.key_id, "local-small", prompt_tokens=100, max_completion_tokens=50)
        await led.client.commit(CommitCall(r.reservation_id, k.key_id, 100, 50))


async def test_alerts_once_per_crossing_signed_and_delivered(settings: LedgerSettings) -> None:
    clock = FixedClock(START)
    async with running_ledger(settings, clock=clock) as led, webhook_receiver() as rx:
        k = await make_key(led.admin, org="acme", team="eng")
        b = await led.admin.set_budget("team", k.team_id, unit="usd", period="monthly", hard_limit=10 * PER_CALL)
        assert list(b.alert_fractions) == [0.5, 0.8, 0.95]
        hook = await led.admin.add_webhook(rx.url("/budget"), budget_id=b.id, name="eng budget")
        org_hook = await led.admin.add_webhook(rx.url("/org"), org_id="acme")
        assert hook.secret.startswith("whsec_") and hook.secret != org_hook.secret
        await spend(led, k, 10)
        with pytest.raises(ResourceExhausted):
            await spend(led, k)
        alerts = await led.admin.list_budget_alerts(b.id)
        assert sorted((a.kind, a.fraction, a.spent) for a in alerts) == [
            ("hard", 1.0, 20000), ("soft", 0.5, 10000), ("soft", 0.8, 16000), ("soft", 0.95, 20000)]
        assert await led.deps.alerts.deliverer.deliver_once() == 8
        assert await led.deps.alerts.deliverer.deliver_once() == 0  # each sent once
        for path, secret in (("/budget", hook.secret), ("/org", org_hook.secret)):
            got = rx.at(path)
            assert sorted(r.json["alert"]["id"] for r in got) == sorted(a.id for a in alerts)
            assert all(r.signed_by(secret) for r in got)
            assert all(r.headers["X-Rationer-Timestamp"] == str(int(START.timestamp())) for r in got)
        soft = next(r.json for r in rx.at("/budget") if r.json["alert"]["fraction"] == 0.8)
        assert soft["text"] == (f"Budget team:{k.team_id} (usd, monthly) reached 80% of its hard limit: "
                                "spent $0.0000160 of $0.0000200.")  # fmt: skip
        assert soft["alert"] | {"id": "", "time": ""} == {
            "id": "", "time": "", "kind": "soft", "fraction": 0.8, "budget_id": b.id, "unit": "usd",
            "scope": {"kind": "team", "id": k.team_id}, "period": "monthly", "hard_limit": 20000, "spent": 16000,
            "period_start": "2031-03-01T00:00:00+00:00", "period_end": "2031-04-01T00:00:00+00:00"}  # fmt: skip
        assert not rx.at("/budget")[0].signed_by(org_hook.secret)
        # Raising the limit and re-setting the same lines raises nothing again this period.
        await led.admin.set_budget("team", k.team_id, unit="usd", period="monthly", hard_limit=10 * PER_CALL)
        assert len(await led.admin.list_budget_alerts(b.id)) == 4
        log = await led.admin.list_webhook_deliveries(hook.webhook.id)
        assert len(log) == 4 and {d.state for d in log} == {"delivered"}
        assert [(a.attempt, a.status_code, a.error) for a in log[0].log] == [(1, 200, "")]
        assert json.loads(log[0].body)["alert"]["budget_id"] == b.id


async def test_retries_with_backoff_then_fails_after_max_attempts(settings: LedgerSettings) -> None:
    clock = FixedClock(START)
    async with running_ledger(settings, clock=clock) as led, webhook_receiver() as rx:
        k = await make_key(led.admin)
        b = await led.admin.set_budget("key", k.key_id, unit="usd", period="daily", hard_limit=4 * PER_CALL,
                                       alert_fractions=[0.5])  # fmt: skip
        flaky = await led.admin.add_webhook(rx.url("/flaky"), budget_id=b.id)
        dead = await led.admin.add_webhook(rx.url("/dead"), budget_id=b.id)
        rx.script = {"/flaky": [500, 503], "/dead": [500] * 10}
        await spend(led, k, 2)
        d = led.deps.alerts.deliverer
        assert await d.deliver_once() == 2  # attempt 1 of both: 500
        clock.advance(9.9)
        assert await d.deliver_once() == 0  # not due before the 10 s backoff
        clock.advance(0.1)
        assert await d.deliver_once() == 2  # attempt 2: 503, 500
        clock.advance(19.9)
        assert await d.deliver_once() == 0  # the second wait doubles: 20 s
        clock.advance(0.1)
        assert await d.deliver_once() == 2  # attempt 3: flaky answers 200; dead fails for good (max 3)
        clock.advance(3600)
        assert await d.deliver_once() == 0
        (ok,) = await led.admin.list_webhook_deliveries(flaky.webhook.id)
        assert ok.state == "delivered"
        assert [(a.attempt, a.status_code) for a in ok.log] == [(1, 500), (2, 503), (3, 200)]
        assert ok.log[0].error == "HTTP 500: receiver says no"
        assert [a.time.seconds - ok.log[0].time.seconds for a in ok.log] == [0, 10, 30]
        (bad,) = await led.admin.list_webhook_deliveries(dead.webhook.id)
        assert (bad.state, bad.attempts, [a.status_code for a in bad.log]) == ("failed", 3, [500, 500, 500])
        assert len(rx.at("/flaky")) == 3 and len({r.body for r in rx.at("/flaky")}) == 1


async def test_test_button_and_unreachable_or_redirecting_receivers(settings: LedgerSettings) -> None:
    async with running_ledger(settings, clock=FixedClock(START)) as led, webhook_receiver() as rx:
        k = await make_key(led.admin)
        b = await led.admin.set_budget("team", k.team_id, unit="usd", period="monthly", hard_limit=10**9)
        good = await led.admin.add_webhook(rx.url("/hook"), budget_id=b.id)
        sent = await led.admin.test_webhook(good.webhook.id)
        assert (sent.state, sent.alert_id, [a.status_code for a in sent.log]) == ("delivered", "", [200])
        (got,) = rx.at("/hook")
        assert got.signed_by(good.secret) and got.json["alert"]["kind"] == "test"
        assert got.json["text"] == f"Test alert from Rationer for {b.id}: this webhook works."
        moved = await led.admin.add_webhook(rx.url("/redirect"), budget_id=b.id)
        sent = await led.admin.test_webhook(moved.webhook.id)
        assert (sent.state, sent.log[0].status_code) == ("failed", 302)
        assert "redirect to 'http://example.invalid/elsewhere' not followed" in sent.log[0].error
        gone = await led.admin.add_webhook("http://127.0.0.1:9/closed", budget_id=b.id)
        sent = await led.admin.test_webhook(gone.webhook.id)
        assert (sent.state, sent.log[0].status_code) == ("failed", 0) and "ConnectError" in sent.log[0].error
        # Audited without the secret; removed webhooks are gone.
        entries = await led.admin.list_audit(action="webhooks.add")
        assert len(entries) == 3 and all("whsec_" not in e.after_json for e in entries)
        assert {json.loads(e.after_json)["url"] for e in entries} == {rx.url("/hook"), rx.url("/redirect"),
                                                                      "http://127.0.0.1:9/closed"}
        await led.admin.remove_webhook(gone.webhook.id)
        assert {w.id for w in await led.admin.list_webhooks(budget_id=b.id)} == {good.webhook.id, moved.webhook.id}
        assert len(await led.admin.list_audit(action="webhooks.remove")) == 1


async def test_bad_input_is_refused_precisely(settings: LedgerSettings) -> None:
    async with running_ledger(settings, clock=FixedClock(START)) as led:
        k = await make_key(led.admin)
        b = await led.admin.set_budget("team", k.team_id, unit="usd", period="monthly", hard_limit=10**9)
        cases = [
            (led.admin.add_webhook("ftp://x/y", budget_id=b.id), InvalidArgument, "absolute http:// or https://"),
            (led.admin.add_webhook("http://u:p@x/y", budget_id=b.id), InvalidArgument, "must not carry credentials"),
            (led.admin.add_webhook("not a url", budget_id=b.id), InvalidArgument, "absolute http"),
            (led.admin.add_webhook("http://x/", budget_id=b.id, org_id="acme"), InvalidArgument, "exactly one"),
            (led.admin.add_webhook("http://x/", budget_id="budget:nope"), NotFound, "budget 'budget:nope'"),
            (led.admin.add_webhook("http://x/", org_id="nope"), NotFound, "org 'nope' does not exist"),
            (led.admin.remove_webhook("wh_nope"), NotFound, "webhook 'wh_nope' does not exist"),
            (led.admin.test_webhook("wh_nope"), NotFound, "webhook 'wh_nope'"),
            (led.admin.list_webhook_deliveries("wh_nope"), NotFound, "webhook 'wh_nope'"),
            (led.admin.budget_status("budget:nope"), NotFound, "does not exist or is not visible"),
            (led.admin.set_budget("team", k.team_id, unit="usd", period="monthly", hard_limit=5,
                                  alert_fractions=[1.5]), InvalidArgument, r"in \(0, 1\]"),
            (led.admin.set_budget("team", k.team_id, unit="usd", period="monthly", hard_limit=5,
                                  alert_fractions=[0.123456]), InvalidArgument, "more than 4 decimals"),
            (led.admin.set_budget("team", k.team_id, unit="usd", period="monthly", hard_limit=-5),
             InvalidArgument, "hard_limit must be between"),
        ]  # fmt: skip
        for call, error, message in cases:
            with pytest.raises(error, match=message):
                await call


async def test_status_burndown_forecast_and_visibility(settings: LedgerSettings) -> None:
    clock = FixedClock(START)
    async with running_ledger(settings, clock=clock) as led:
        eng = await make_key(led.admin, org="acme", team="eng", email="e@acme.com")
        ops = await make_key(led.admin, org="acme", team="ops", email="o@acme.com")
        team = await led.admin.set_budget("team", eng.team_id, unit="usd", period="monthly", hard_limit=100_000)
        await led.admin.set_budget("team", ops.team_id, unit="usd", period="monthly", hard_limit=10**9)
        org = await led.admin.set_budget("org", "acme", unit="usd", period="monthly", hard_limit=10**12)
        clock.at = datetime(2031, 3, 13, 8, tzinfo=UTC).timestamp()
        await spend(led, eng, 6)  # 12_000 on the 13th
        clock.at = START.timestamp()
        await spend(led, eng, 20)  # 40_000 on the 15th: 52_000 in the window
        (st,) = (await led.admin.budget_status(team.id)).budgets
        assert [(p.start.ToDatetime(UTC).day, p.amount, p.cumulative) for p in st.points] == [
            (13, 12_000, 12_000), (15, 40_000, 52_000)]
        assert (st.budget.spent, st.spent_rollups, st.hourly) == (52_000, 52_000, False)
        # Rate over the last 7 days (since 2031-03-09 00:00, 6.5 days ago): 8000/day; 48000 left: 6 days.
        assert st.rate_since.ToDatetime(UTC) == datetime(2031, 3, 9, tzinfo=UTC)
        assert st.rate_per_day == pytest.approx(8000)
        assert st.runs_out_at.ToDatetime(UTC) == datetime(2031, 3, 21, 12, tzinfo=UTC)
        assert st.runs_out_before_period_end
        assert {a.fraction for a in st.alerts} == {0.5}
        assert await led.deps.alerts.scan_forecasts() == 1
        assert await led.deps.alerts.scan_forecasts() == 0  # once per period
        (fc,) = [a for a in await led.admin.list_budget_alerts(team.id) if a.kind == "forecast"]
        assert "forecast to run out before its period ends, on 2031-03-21 12:00 UTC" in fc.text
        (big,) = (await led.admin.budget_status(org.id)).budgets
        assert not big.runs_out_before_period_end
        async with LedgerAdminClient(led.target, eng.secret) as member:
            seen = {s.budget.id for s in (await member.budget_status()).budgets}
            assert seen == {team.id, org.id}  # its own path: not ops's team budget
            with pytest.raises(NotFound):
                await member.budget_status(f"budget:team:{ops.team_id}:usd:monthly")
            with pytest.raises(PermissionDenied, match="may not add webhooks"):
                await member.add_webhook("http://127.0.0.1:1/", budget_id=team.id)
            assert {a.budget_id for a in await member.list_budget_alerts()} == {team.id}
