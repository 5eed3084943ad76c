"""`rationer keys|budgets|report chargeback` against a real ledger."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from rationer.platform.clock import ShiftedClock
from services.ledger.calls import CommitCall
from services.ledger.client import LedgerClient
from testsupport.ledger import ADMIN_TOKEN, cache_hit, running_ledger, settings_for


async def rationer(target: str, *args: str, token: str = ADMIN_TOKEN) -> tuple[int, str, str]:
    env = {**os.environ, "RATIONER_LEDGER_ADDRESS": target, "RATIONER_ADMIN_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rationer.cli.main", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_keys_budgets_and_chargeback(tmp_path: Path) -> None:
    # The ledger's clock is injected: mid-month on a fixed date, so the
    # report's period is known and no month boundary can fall inside the test.
    clock = ShiftedClock(datetime(2031, 3, 15, 12, tzinfo=UTC))
    async with running_ledger(settings_for("sqlite", tmp_path), clock=clock) as led:
        t = led.target
        rc, out, _ = await rationer(t, "keys", "create", "--org", "acme", "--team", "eng",
                                    "--user", "alice@acme.com", "--tier", "local-small")
        assert rc == 0, out
        fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
        key_id, secret = fields["key_id"], fields["secret"]
        assert (await led.client.authenticate(secret)).team_id == "acme/eng"
        rc, out, _ = await rationer(t, "keys", "create", "--org", "acme", "--team", "ml",
                                    "--service-account", "batch")
        assert rc == 0
        ml_key = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)["key_id"]
        rc, out, _ = await rationer(t, "budgets", "set", "team:acme/eng", "--usd", "25", "--period", "monthly")
        assert rc == 0 and "budget:team:acme/eng:usd:monthly" in out and "limit=25.000000" in out
        for kid, n in ((key_id, 3), (ml_key, 2)):
            for _ in range(n):
                r = await led.client.authorize(kid, "local-small", prompt_tokens=1000, max_completion_tokens=500)
                await led.client.commit(CommitCall(r.reservation_id, kid, 1000, 500))
        hit = cache_hit(key_id, "hit-1", tier="frontier", prompt_tokens=100, completion_tokens=50)
        await led.client.record_cache_hit(hit)
        rc, out, _ = await rationer(t, "budgets", "show", "team:acme/eng")
        assert rc == 0 and "spent=0.000" in out
        month = "2031-03"
        rc, out, err = await rationer(t, "report", "chargeback", "--period", month, "--by", "team",
                                      "--format", "json")
        assert rc == 0, err
        report = json.loads(out)
        rows = {r["team"]: r for r in report["rows"]}
        assert rows["acme/eng"]["requests"] == 4 and rows["acme/eng"]["cache_hits"] == 1
        assert rows["acme/ml"]["requests"] == 2
        async with LedgerClient(t, bearer=ADMIN_TOKEN) as c:
            usage = await c.usage(group_by=["team"])
        assert report["total"]["spend_nano_usd"] == sum(u.cost for u in usage)
        events = await led.admin.list_events()
        assert report["total"]["spend_nano_usd"] == sum(e.cost.nano_usd for e in events)
        rc, out, _ = await rationer(t, "report", "chargeback", "--period", month, "--format", "csv")
        table = list(csv.DictReader(io.StringIO(out)))
        assert table[-1]["team"] == "TOTAL" and int(table[-1]["requests"]) == 6
        rc, out, _ = await rationer(t, "report", "chargeback", "--period", month, "--format", "table")
        assert rc == 0 and "acme/eng" in out and "TOTAL" in out
        rc, out, _ = await rationer(t, "keys", "revoke", key_id)
        assert rc == 0 and "revoked" in out
        rc, out, _ = await rationer(t, "keys", "list", "--org", "acme")
        assert key_id not in out and ml_key in out
        rc, _, err = await rationer(t, "keys", "list", token="wrong")
        assert rc == 2 and "UNAUTHENTICATED" in err
        rc, _, err = await rationer(t, "report", "chargeback", "--period", "last-month")
        assert rc == 2 and "2026-11" in err
