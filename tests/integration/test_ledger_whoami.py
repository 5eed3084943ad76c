"""WhoAmI (the console's sign-in): role and place of a key, the admin token, refusals; no service token needed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from rationer.errors import Unauthenticated
from rationer.platform.clock import FixedClock
from services.ledger.client import LedgerClient
from testsupport.ledger import ADMIN_TOKEN, make_key, running_ledger, settings_for


async def test_whoami_names_the_role_and_place_of_the_bearer(tmp_path: Path) -> None:
    clock = FixedClock(datetime(2031, 3, 15, 12, tzinfo=UTC))
    async with running_ledger(settings_for("sqlite", tmp_path), clock=clock) as led:
        k = await make_key(led.admin, role="viewer", ttl_s=3600)
        # No service token: WhoAmI is open, the bearer decides (as for Usage).
        async with LedgerClient(led.target, bearer=k.secret) as c:
            me = await c.whoami()
        assert (me.role, me.key_id, me.org_id, me.team_id, me.user_id) == ("viewer", k.key_id, k.org_id,
                                                                           k.team_id, k.user_id)  # fmt: skip
        assert me.expires_at_us == clock.now_us() + 3600 * 1_000_000
        admin = await led.client.as_bearer(ADMIN_TOKEN).whoami()
        assert (admin.role, admin.key_id) == ("admin", "")
        await led.admin.revoke_key(k.key_id)
        for bearer in (k.secret, "rk_unknown", ""):
            with pytest.raises(Unauthenticated):
                await led.client.as_bearer(bearer).whoami()
