"""`rationer budgets set --alert`, `budgets status|alerts`, `budgets webhook add|list|test|log|remove`."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from rationer.platform.clock import FixedClock
from services.ledger.calls import CommitCall
from tests.integration.test_ledger_cli import rationer
from testsupport.ledger import make_key, running_ledger, settings_for
from testsupport.webhooks import webhook_receiver


async def test_budgets_webhook_cli(tmp_path: Path) -> None:
    clock = FixedClock(datetime(2031, 3, 15, 12, tzinfo=UTC))
    async with running_ledger(settings_for("sqlite", tmp_path), clock=clock) as led, webhook_receiver() as rx:
        k = await make_key(led.admin)
        t = led.target
        rc, out, err = await rationer(t, "budgets", "set", f"team:{k.team_id}", "--usd", "0.00001",
                                      "--alert", "0.2", "--alert", "0.75")  # fmt: skip
        assert rc == 0, err
        bid = f"budget:team:{k.team_id}:usd:monthly"
        rc, out, err = await rationer(t, "budgets", "webhook", "add", rx.url("/cli"), "--budget", bid)
        assert rc == 0, err
        hook_id = re.search(r"webhook_id: (\S+)", out).group(1)  # type: ignore[union-attr]
        secret = re.search(r"secret: (\S+)", out).group(1)  # type: ignore[union-attr]
        rc, out, err = await rationer(t, "budgets", "webhook", "list")
        assert hook_id in out and secret not in out
        rc, out, err = await rationer(t, "budgets", "webhook", "test", hook_id)
        assert (rc, out.strip()) == (0, "delivered: HTTP 200"), err
        assert rx.at("/cli")[0].signed_by(secret)
        r = await led.client.authorize(k.key_id, "local-small", prompt_tokens=100, max_completion_tokens=50)
        await led.client.commit(CommitCall(r.reservation_id, k.key_id, 100, 50))  # 2000 of 10000: 20% crossed
        rc, out, err = await rationer(t, "budgets", "status", bid)
        assert rc == 0 and "alert soft 0.2: Budget team:" in out and "runs out: 2031-04-10 12:00 UTC" in out, (out, err)
        rc, out, err = await rationer(t, "budgets", "alerts")
        assert out.count("soft 0.2") == 1
        await led.deps.alerts.deliverer.deliver_once()
        rc, out, err = await rationer(t, "budgets", "webhook", "log", hook_id)
        assert out.count("delivered") == 2 and "alert=test" in out and "HTTP 200" in out
        rc, out, err = await rationer(t, "budgets", "webhook", "add", "gopher://x", "--budget", bid)
        assert rc == 2 and "absolute http:// or https:// URL" in err
        rc, out, err = await rationer(t, "budgets", "webhook", "remove", hook_id)
        assert rc == 0 and f"removed {hook_id}" in out
