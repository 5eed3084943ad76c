"""`rationer limits|prices|events` and the chargeback report's defaults, labels, totals, money digits and wrong hits.

Through the real CLI entry point against a real ledger whose clock is
injected: "this month" is the ledger's month (2031-03), not today's.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rationer.errors import NotFound, ResourceExhausted
from rationer.platform.clock import ShiftedClock
from services.ledger.calls import CommitCall
from services.ledger.settings import LedgerSettings
from tests.integration.test_ledger_cli import rationer
from testsupport.ledger import RunningLedger, cache_hit, running_ledger, settings_for

CLOCK_AT = datetime(2031, 3, 15, 12, tzinfo=UTC)


def fields(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


async def new_key(t: str, *args: str) -> str:
    rc, out, err = await rationer(t, "keys", "create", "--org", "acme", *args)
    assert rc == 0, err
    return fields(out)["key_id"]


async def spend(led: RunningLedger, key_id: str, n: int, prompt: int = 1000, completion: int = 500) -> None:
    for _ in range(n):
        r = await led.client.authorize(key_id, "local-small", prompt_tokens=prompt, max_completion_tokens=completion)
        await led.client.commit(CommitCall(r.reservation_id, key_id, prompt, completion))


async def test_limits_prices_and_tiers_through_the_cli(tmp_path: Path) -> None:
    async with running_ledger(settings_for("sqlite", tmp_path), clock=ShiftedClock(CLOCK_AT)) as led:
        t = led.target
        rc, _, err = await rationer(t, "keys", "create", "--org", "acme", "--team", "eng", "--user", "a@acme.com",
                                    "--tier", "nosuch")  # fmt: skip
        assert rc == 2 and "INVALID_ARGUMENT" in err and "no tier 'nosuch' has a price" in err
        assert "prices set" in err
        rc, out, err = await rationer(t, "prices", "set", "nosuch", "--model", "tiny-1", "--input", "0.5",
                                      "--output", "1.25")  # fmt: skip
        assert rc == 0, err
        assert "price nosuch v1: tiny-1" in out and "$0.500000/M" in out and "$1.250000/M" in out
        key = await new_key(t, "--team", "eng", "--user", "a@acme.com", "--tier", "nosuch")
        rc, out, err = await rationer(t, "limits", "set", f"key:{key}", "--rpm", "2")
        assert rc == 0 and "requests/min=2" in out and "tokens/min=unlimited" in out, err
        for _ in range(2):
            await led.client.authorize(key, "nosuch", prompt_tokens=10, max_completion_tokens=10)
        with pytest.raises(ResourceExhausted):
            await led.client.authorize(key, "nosuch", prompt_tokens=10, max_completion_tokens=10)
        rc, _, err = await rationer(t, "limits", "set", "org:acme", "--rpm", "2")
        assert rc == 2 and "key or a team" in err
        rc, _, err = await rationer(t, "prices", "set", "nosuch", "--model", "m", "--input", "-1", "--output", "1")
        assert rc == 2 and "--input" in err


async def test_budget_validation_and_denials_in_dollars(tmp_path: Path) -> None:
    async with running_ledger(settings_for("sqlite", tmp_path), clock=ShiftedClock(CLOCK_AT)) as led:
        t = led.target
        key = await new_key(t, "--team", "eng", "--user", "a@acme.com")
        rc, _, err = await rationer(t, "budgets", "set", f"key:{key}", "--usd", "-5")
        assert rc == 2 and "--usd must be between 0 and 1,000,000,000, got -5" in err
        assert "5,000,000,000" not in err
        rc, out, err = await rationer(t, "budgets", "set", f"key:{key}", "--usd", "0.00001")
        assert rc == 0 and "limit=0.0000100" in out, err
        # 1000 prompt + 500 completion tokens on local-small cost 20,000 nano-USD.
        with pytest.raises(ResourceExhausted) as denied:
            await led.client.authorize(key, "local-small", prompt_tokens=1000, max_completion_tokens=500)
        assert "this request $0.0000200" in denied.value.message and "$0.0000100" in denied.value.message
        rc, out, err = await rationer(t, "events", "list", "--kind", "denied")
        assert rc == 0 and out.count("denied") == 1 and key in out, err
        (event,) = json.loads((await rationer(t, "events", "list", "--kind", "denied", "--json"))[1])
        assert event["kind"] == "denied" and event["key_id"] == key


@pytest.fixture(params=["sqlite", "postgres"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerSettings:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else ""
    return settings_for(request.param, tmp_path, dsn)


async def test_chargeback_defaults_to_the_ledgers_month_with_labels_splits_and_signals(
    backend_settings: LedgerSettings,
) -> None:
    async with running_ledger(backend_settings, clock=ShiftedClock(CLOCK_AT)) as led:
        t = led.target
        alice = await new_key(t, "--team", "eng", "--user", "alice@acme.com", "--project", "web")
        bot = await new_key(t, "--team", "ml", "--service-account", "batch")
        rc, _, err = await rationer(t, "budgets", "set", "team:acme/ml", "--tokens", "8000", "--soft", "0.5")
        assert rc == 0, err
        await spend(led, alice, 2)
        await spend(led, bot, 4)  # crosses half of 8000 tokens: one soft alert
        with pytest.raises(ResourceExhausted):  # 9000 tokens do not fit: one denial
            await led.client.authorize(bot, "local-small", prompt_tokens=8000, max_completion_tokens=1000)
        await spend(led, alice, 1, prompt=10, completion=0)  # 100 nano-USD: a sub-cent cost
        hit = cache_hit(alice, "hit-1", tier="frontier", prompt_tokens=100, completion_tokens=50)
        await led.client.record_cache_hit(hit)
        # The key that received the hit reported it wrong, twice: counted once, in its row.
        first, replayed = await led.client.record_wrong_hit(alice, "hit-1")
        assert not replayed and first.kind == "wrong_hit" and first.tier == "frontier" and first.cost == 0
        assert (await led.client.record_wrong_hit(alice, "hit-1"))[1]
        with pytest.raises(NotFound):  # bot received no hit under that id
            await led.client.record_wrong_hit(bot, "hit-1")

        rc, out, err = await rationer(t, "report", "chargeback", "--by", "org", "--format", "json")
        assert rc == 0, err
        report = json.loads(out)
        assert report["period"] == "2031-03"  # the ledger's clock, not the machine's
        (org,) = report["rows"]
        total = report["total"]
        assert org["requests"] == total["requests"] == 8 and total["cache_hits"] == 1
        assert total["prompt_tokens"] == 6 * 1000 + 10 + 100 and total["completion_tokens"] == 6 * 500 + 50
        assert total["denials"] == 1 and total["soft_alerts"] == 1 and total["wrong_hits"] == 1
        assert total["counterfactual_nano_usd"] > total["spend_nano_usd"] > 0
        assert total["cache_savings_nano_usd"] > 0 and total["routing_savings_nano_usd"] > 0
        assert total["cache_savings_nano_usd"] + total["routing_savings_nano_usd"] == total["savings_nano_usd"]
        events = await led.admin.list_events()
        assert total["spend_nano_usd"] == sum(e.cost.nano_usd for e in events)

        rc, out, _ = await rationer(t, "report", "chargeback", "--by", "key", "--format", "json")
        labels = {r["key"]: r["label"] for r in json.loads(out)["rows"]}
        assert labels[bot] == f"{bot} (acme/ml service account batch)"
        assert labels[alice].startswith(f"{alice} (") and "service account" not in labels[alice]
        rc, out, _ = await rationer(t, "report", "chargeback", "--by", "user", "--format", "csv")
        users = {r["user"]: r for r in csv.DictReader(io.StringIO(out))}
        assert "(service accounts)" in users and int(users["(service accounts)"]["requests"]) == 4
        assert int(users["(service accounts)"]["denials"]) == 1
        (alice_row,) = [r for u, r in users.items() if u not in ("(service accounts)", "TOTAL")]
        assert int(alice_row["wrong_hits"]) == 1 and int(users["(service accounts)"]["wrong_hits"]) == 0
        assert list(users["TOTAL"])[-3:] == ["denials", "soft_alerts", "wrong_hits"]  # the new column is last
        rc, out, _ = await rationer(t, "report", "chargeback", "--by", "project", "--format", "csv")
        projects = {r["project"]: r for r in csv.DictReader(io.StringIO(out))}
        assert set(projects) == {"web", "(untagged)", "TOTAL"}
        rc, out, _ = await rationer(t, "report", "chargeback", "--by", "model", "--period", "2031-03-15",
                                    "--format", "table")  # fmt: skip
        assert rc == 0 and "Chargeback 2031-03-15 by model" in out and "cache_savings_usd" in out
        # Another month of the ledger's calendar is empty; a malformed one is refused.
        rc, out, _ = await rationer(t, "report", "chargeback", "--period", "2031-02", "--format", "json")
        assert json.loads(out)["total"]["requests"] == 0
        rc, _, err = await rationer(t, "report", "chargeback", "--by", "galaxy")
        assert rc == 2 and "org" in err and "key" in err


async def test_sub_cent_costs_keep_their_digits(tmp_path: Path) -> None:
    async with running_ledger(settings_for("sqlite", tmp_path), clock=ShiftedClock(CLOCK_AT)) as led:
        key = await new_key(led.target, "--team", "eng", "--user", "a@acme.com")
        await spend(led, key, 1, prompt=10, completion=0)  # 10 tokens at $0.01/M = 100 nano-USD
        rc, out, _ = await rationer(led.target, "report", "chargeback", "--format", "csv")
        (row, _total) = list(csv.DictReader(io.StringIO(out)))
        assert row["spend_usd"] == "0.000000100"
        rc, out, _ = await rationer(led.target, "events", "list")
        assert rc == 0 and "cost=$0.000000100" in out
