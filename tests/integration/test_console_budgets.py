"""The Budgets page's API on the real console stack (seeded ledger + router door), as each role.

Numbers are compared with the ledger's own BudgetStatus; changes land in the audit log as the
signed-in key; refusals are 400/403/404 with the ledger's message, never 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from services.ledger.admin_client import LedgerAdminClient
from testsupport.console_stack import ConsoleStack, running_console_stack
from testsupport.webhooks import webhook_receiver


class Signed:
    def __init__(self, http: aiohttp.ClientSession, base: str, csrf: str) -> None:
        self.http, self.base, self.csrf = http, base, csrf

    async def get(self, path: str, **query: str) -> tuple[int, Any]:
        async with self.http.get(f"{self.base}/console/api/{path}", params=query) as r:
            return r.status, await (r.json() if r.content_type == "application/json" else r.text())

    async def post(self, path: str, body: dict[str, Any], csrf: bool = True) -> tuple[int, Any]:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        async with self.http.post(f"{self.base}/console/api/{path}", json=body, headers=headers) as r:
            return r.status, await r.json()


@asynccontextmanager
async def signed_in(st: ConsoleStack, who: str) -> AsyncIterator[Signed]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{st.base_url}/console/login", json={"api_key": st.keys[who].secret}) as r:
            assert r.status == 200, await r.text()
            csrf = (await r.json())["csrf_token"]
        yield Signed(http, st.base_url, csrf)


async def _refusals(f: Signed, fin: str, budget_id: str) -> None:
    """Bad input is a 400 naming the field, an unknown id a 404: the ledger's or the page's message, never 500."""
    bad: list[tuple[str, dict[str, Any], int, str]] = [
        ("budgets", {"scope": f"team:{fin}", "hard_limit": "-5"}, 400, "between $0"),
           ("budgets", {"scope": f"team:{fin}", "hard_limit": "1", "alert_fractions": "0.5,x"}, 400, "'x'"),
           ("budgets", {"scope": "team:acme/nope", "hard_limit": "1"}, 404, "does not exist"),
           ("budgets", {"scope": "nonsense", "hard_limit": "1"}, 400, "scope must look like"),
           ("budgets/remove", {"id": "budget:team:nope:usd:monthly"}, 404, "does not exist"),
           ("budgets/remove", {}, 400, "id is required"),
           ("webhooks", {"budget_id": budget_id, "url": "javascript:alert(1)"}, 400, "http:// or https://"),
           ("webhooks", {"budget_id": "budget:nope", "url": "https://x.test/"}, 404, "does not exist"),
           ("webhooks/test", {"webhook_id": "wh_nope"}, 404, "does not exist"),
           ("webhooks/remove", {"webhook_id": ["x"]}, 400, "must be a string")]  # fmt: skip
    for path, body, code, msg in bad:
        status, err = await f.post(path, body)
        assert status == code and msg in err["error"]["message"], (path, body, status, err)


async def test_budgets_page_api_as_finops_and_viewer(tmp_path: Path) -> None:
    async with running_console_stack(tmp_path) as st, webhook_receiver() as rx:
        eng, fin = st.seeded.teams["eng"], st.seeded.teams["fin"]
        ledger_view = (await st.ledger.admin.budget_status()).budgets
        async with signed_in(st, "finops") as f:
            status, d = await f.get("budgets")
            assert status == 200 and d["can_edit"]
            assert {b["id"]: b["spent"] for b in d["budgets"]} == {s.budget.id: s.budget.spent for s in ledger_view}
            team = next(b for b in d["budgets"] if b["scope"]["id"] == eng)
            mine = next(s for s in ledger_view if s.budget.id == team["id"])
            assert [p["cumulative"] for p in team["points"]] == [p.cumulative for p in mine.points]
            assert team["points"] and team["points"][-1]["cumulative"] == team["spent_rollups"] > 0
            status, svg = await f.get("budgets/burndown.svg", id=team["id"])
            assert status == 200 and svg.startswith("<svg") and 'class="hard-line"' in svg

            status, made = await f.post("budgets", {"scope": f"team:{fin}", "unit": "usd", "period": "monthly",
                                                    "hard_limit": "12.5", "alert_fractions": "50%, 0.9"})
            assert status == 200 and made["alert_fractions"] == [0.5, 0.9], made
            (entry,) = [e for e in await st.ledger.admin.list_audit(action="budgets.set")
                        if e.target == made["id"]]  # fmt: skip
            assert entry.actor == f"key:{st.keys['finops'].key_id}" and '"hard_limit": 12500000000' in entry.after_json

            status, hook = await f.post("webhooks", {"budget_id": made["id"], "url": rx.url("/fin"), "name": "fin"})
            assert status == 200 and hook["secret"].startswith("whsec_")
            status, sent = await f.post("webhooks/test", {"webhook_id": hook["webhook"]["id"]})
            assert (status, sent["state"], sent["log"][0]["status_code"]) == (200, "delivered", 200)
            assert rx.at("/fin")[0].signed_by(hook["secret"])
            status, log = await f.get("webhooks/deliveries", webhook_id=hook["webhook"]["id"])
            assert [dv["state"] for dv in log["deliveries"]] == ["delivered"]
            status, d = await f.get("budgets")
            assert [w["url"] for b in d["budgets"] if b["id"] == made["id"] for w in b["webhooks"]] == [rx.url("/fin")]

            await _refusals(f, fin, made["id"])
            status, err = await f.post("budgets/remove", {"id": made["id"]}, csrf=False)
            assert status == 403 and "CSRF" in err["error"]["message"]
            status, gone = await f.post("budgets/remove", {"id": made["id"]})
            assert status == 200 and gone == {"removed": made["id"]}

        async with signed_in(st, "viewer") as v:
            status, d = await v.get("budgets")
            assert status == 200 and not d["can_edit"] and d["org_webhooks"] == []
            assert [b["scope"]["id"] for b in d["budgets"]] == [eng]  # not globex's org budget
            status, err = await v.post("budgets", {"scope": f"team:{eng}", "hard_limit": "1"})
            assert status == 403 and "role 'viewer'" in err["error"]["message"]
            status, err = await v.get("webhooks/deliveries", webhook_id=hook["webhook"]["id"])
            assert status == 403
        async with LedgerAdminClient(st.ledger.target, st.keys["viewer"].secret) as direct:
            assert [s.budget.id for s in (await direct.budget_status()).budgets] == [team["id"]]
