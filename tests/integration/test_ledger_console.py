"""The console's ledger foundation: roles, the audit log, `rationer report audit`.

On SQLite and PostgreSQL, over real gRPC (rollups: test_ledger_rollups.py).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rationer.errors import InvalidArgument, PermissionDenied
from rationer.platform.clock import ShiftedClock
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.calls import CommitCall
from services.ledger.client import LedgerClient
from services.ledger.settings import LedgerSettings
from tests.integration.test_ledger_cli import rationer
from testsupport import ledger as tsl
from testsupport.ledger import RunningLedger, make_key, running_ledger, settings_for

CLOCK = ShiftedClock(datetime(2031, 3, 15, 12, tzinfo=UTC))


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerSettings:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else ""
    return settings_for(request.param, tmp_path, dsn)


async def _spend(led: RunningLedger, k: tsl.TestKey) -> None:
    r = await led.client.authorize(k.key_id, "local-small", prompt_tokens=100, max_completion_tokens=50)
    await led.client.commit(CommitCall(r.reservation_id, k.key_id, 100, 50))


async def test_roles_are_enforced_on_admin_and_report_rpcs(settings: LedgerSettings) -> None:
    async with running_ledger(settings, clock=CLOCK) as led:
        eng = await make_key(led.admin, org="acme", team="eng", email="e@acme.com")
        ops = await make_key(led.admin, org="acme", team="ops", email="o@acme.com")
        other = await make_key(led.admin, org="globex", team="eng", email="g@globex.com")
        for k in (eng, ops, other):
            await _spend(led, k)
        fin = await led.admin.create_key(user_id=eng.user_id, role="finops")
        view = await led.admin.create_key(user_id=eng.user_id, role="viewer")
        boss = await led.admin.create_key(user_id=eng.user_id, role="admin")
        assert (fin.key.role, view.key.role, boss.key.role) == ("finops", "viewer", "admin")
        assert (await led.client.authenticate(boss.secret)).is_admin
        with pytest.raises(InvalidArgument, match="role must be one of"):
            await led.admin.create_key(user_id=eng.user_id, role="owner")

        async with LedgerAdminClient(led.target, fin.secret) as f, LedgerClient(led.target, bearer=fin.secret) as fr:
            # finops: all spend (every org), budgets; nothing else.
            rows, _, _ = await fr.usage_report(group_by=["org"])
            assert {r.group["org"] for r in rows} == {"acme", "globex"}
            await f.set_budget("team", eng.team_id, unit="usd", period="monthly", hard_limit=10**12)
            assert len(await f.list_budgets()) == 1
            await f.remove_budget(f"budget:team:{eng.team_id}:usd:monthly")
            assert len(await f.list_events()) == 3
            assert len(await f.list_keys()) == 6  # finops reads every key (test_ledger_requests.py)
            for call in (f.create_key(user_id=eng.user_id), f.list_audit(),
                         f.revoke_key(eng.key_id), f.set_price("x", "m", 1, 1)):  # fmt: skip
                with pytest.raises(PermissionDenied, match=r"role 'finops'.*admin token or a key made with "
                                                           r"`rationer keys create --role admin`"):  # fmt: skip
                    await call

        async with LedgerAdminClient(led.target, view.secret) as v, LedgerClient(led.target, bearer=view.secret) as vr:
            # viewer: its own team's usage only, no control plane at all.
            rows, _, _ = await vr.usage_report(group_by=["team"])
            assert [r.group["team"] for r in rows] == [eng.team_id]
            rows, _, _ = await vr.usage_report(scope=("key", eng.key_id), group_by=["key"])
            assert [r.group["key"] for r in rows] == [eng.key_id]
            for scope in (("org", "acme"), ("team", ops.team_id), ("key", ops.key_id), ("user", ops.user_id)):
                with pytest.raises(PermissionDenied, match=f"may read only its own team '{eng.team_id}'"):
                    await vr.usage_report(scope=scope)
            with pytest.raises(PermissionDenied, match=r"role 'viewer' and may not set budgets.*role admin or finops"
                                                       r".*--role finops"):  # fmt: skip
                await v.set_budget("team", eng.team_id, unit="usd", period="monthly", hard_limit=1)
            with pytest.raises(PermissionDenied, match="may not list budgets"):
                await v.list_budgets()

        async with LedgerClient(led.target, bearer=eng.secret) as mr:
            # member (every key made without a role): its own org, as before roles existed.
            rows, _, _ = await mr.usage_report(group_by=["team"])
            assert {r.group["team"] for r in rows} == {eng.team_id, ops.team_id}
            with pytest.raises(PermissionDenied, match="may only read usage of org 'acme'"):
                await mr.usage_report(scope=("org", "globex"))
        async with LedgerAdminClient(led.target, eng.secret) as m:
            with pytest.raises(PermissionDenied, match=r"role 'member'.*may not set budgets"):
                await m.set_budget("team", eng.team_id, unit="usd", period="monthly", hard_limit=1)
        async with LedgerAdminClient(led.target, boss.secret) as b:
            assert len(await b.list_audit()) > 0


async def test_every_admin_change_is_audited_with_before_and_after(settings: LedgerSettings) -> None:
    async with running_ledger(settings, clock=CLOCK) as led:
        k = await make_key(led.admin)
        await led.admin.set_budget("team", k.team_id, unit="usd", period="monthly", hard_limit=1000)
        await led.admin.set_budget("team", k.team_id, unit="usd", period="monthly", hard_limit=2000)
        await led.admin.remove_budget(f"budget:team:{k.team_id}:usd:monthly")
        await led.admin.set_price("local-small", "tiny-2", 7, 9)
        await led.admin.set_rate_limit("key", k.key_id, rpm=5)
        await led.admin.update_key(k.key_id, role="viewer", allowed_tiers=["local-small"])
        await led.admin.revoke_key(k.key_id)
        boss = await led.admin.create_key(user_id=k.user_id, role="admin")
        async with LedgerAdminClient(led.target, boss.secret) as b:
            await b.set_budget("org", k.org_id, unit="tokens", period="daily", hard_limit=5)
            entries = await b.list_audit()
        actions = [e.action for e in entries]
        assert actions[:3] == ["orgs.create", "teams.create", "users.create"]
        assert actions[3:] == ["keys.create", "budgets.set", "budgets.set", "budgets.remove", "prices.set",
                               "limits.set", "keys.update", "keys.revoke", "keys.create", "budgets.set"]
        assert {e.actor for e in entries[:-1]} == {"admin-token"}
        assert entries[-1].actor == f"key:{boss.key.key_id}"
        first, second, removed = entries[4], entries[5], entries[6]
        assert json.loads(first.before_json) is None and json.loads(first.after_json)["hard_limit"] == 1000
        assert json.loads(second.before_json)["hard_limit"] == 1000
        assert json.loads(second.after_json)["hard_limit"] == 2000
        assert json.loads(removed.before_json)["hard_limit"] == 2000 and json.loads(removed.after_json) is None
        assert removed.target.endswith(":usd:monthly")
        price = entries[7]
        assert json.loads(price.before_json)["version"] == 1 and json.loads(price.after_json)["model"] == "tiny-2"
        upd = entries[9]
        assert (json.loads(upd.before_json)["role"], json.loads(upd.after_json)["role"]) == ("member", "viewer")
        assert json.loads(upd.after_json)["allowed_tiers"] == ["local-small"]
        assert json.loads(entries[10].after_json)["revoked_at_us"] is not None
        # The secret is shown once, never logged.
        assert all(k.secret not in e.after_json and boss.secret not in e.after_json for e in entries)
        assert len(await led.admin.list_audit(action="budgets.set")) == 3
        with pytest.raises(InvalidArgument):
            await led.admin.list_audit(limit=10_001)


async def test_report_audit_table_csv_json(tmp_path: Path) -> None:
    async with running_ledger(settings_for("sqlite", tmp_path), clock=CLOCK) as led:
        t = led.target
        rc, out, err = await rationer(t, "keys", "create", "--org", "acme", "--team", "fin", "--user",
                                      "f@acme.com", "--role", "finops")  # fmt: skip
        assert rc == 0, err
        key_id = dict(x.split(": ", 1) for x in out.splitlines() if ": " in x)["key_id"]
        rc, out, err = await rationer(t, "keys", "update", key_id, "--role", "viewer")
        assert rc == 0 and "role=viewer" in out, err
        rc, out, err = await rationer(t, "report", "audit", "--format", "csv")
        assert rc == 0, err
        rows = list(csv.DictReader(io.StringIO(out)))
        assert [r["action"] for r in rows][-2:] == ["keys.create", "keys.update"]
        assert rows[-1]["target"] == key_id and '"role": "viewer"' in rows[-1]["after"]
        rc, out, err = await rationer(t, "report", "audit", "--format", "json", "--action", "keys.update")
        assert rc == 0, err
        (entry,) = json.loads(out)
        assert entry["before"]["role"] == "finops" and entry["after"]["role"] == "viewer"
        assert entry["actor"] == "admin-token" and entry["time"].startswith("2031-03-15")
        rc, out, err = await rationer(t, "report", "audit", "--period", "2031-03")
        assert rc == 0 and "Audit log" in out and "keys.update" in out, err
        rc, out, err = await rationer(t, "report", "audit")
        assert rc == 0
        # A non-admin key is refused, with what to do instead.
        created = await led.admin.create_key(user_id="acme/fin/f@acme.com", role="finops")
        rc, _, err = await rationer(t, "report", "audit", token=created.secret)
        assert rc == 2 and "PERMISSION_DENIED" in err and "--role admin" in err
