"""The console's HTTP contract against a real seeded stack (ledger + router door): sign-in, cookie,
CSRF, bad input, roles, and the numbers against the ledger's own Usage."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from services.ledger.report import usd
from testsupport.console_stack import ConsoleStack, running_console_stack

MARCH = {"from": "2031-03-01", "to": "2031-03-31"}


@pytest.fixture(scope="module")
async def st(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ConsoleStack]:
    async with running_console_stack(tmp_path_factory.mktemp("console-http")) as stack:
        yield stack


def session() -> aiohttp.ClientSession:
    # unsafe: the jar keeps cookies of an IP host (127.0.0.1).
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def signed_in(st: ConsoleStack, who: str) -> tuple[aiohttp.ClientSession, str]:
    s = session()
    r = await s.post(f"{st.base_url}/console/login", json={"api_key": st.keys[who].secret})
    assert r.status == 200, await r.text()
    return s, (await r.json())["csrf_token"]


async def test_pages_redirect_to_sign_in_and_the_api_answers_401(st: ConsoleStack) -> None:
    async with session() as s:
        r = await s.get(f"{st.base_url}/console/chargeback?by=team", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/console/login?next=%2Fconsole%2Fchargeback%3Fby%3Dteam"
        r = await s.get(f"{st.base_url}/console/api/overview")
        assert r.status == 401
        assert "POST /console/login" in (await r.json())["error"]["message"]


async def test_sign_in_sets_a_sealed_httponly_strict_cookie(st: ConsoleStack) -> None:
    async with session() as s:
        r = await s.post(f"{st.base_url}/console/login", allow_redirects=False,
                         data={"api_key": st.keys["finops"].secret, "next": "/console/chargeback?by=org"})  # fmt: skip
        assert r.status == 303 and r.headers["Location"] == "/console/chargeback?by=org"
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie  # plain HTTP, not behind_tls
        assert st.keys["finops"].secret not in cookie and "rationer_console=v1." in cookie
        info = await (await s.get(f"{st.base_url}/console/api/session")).json()
        assert (info["role"], info["key_id"]) == ("finops", st.keys["finops"].key_id)
        assert info["this_month"] == MARCH  # the router's clock is the seeded month's
        # An open redirect is not followed: `next` must be a console path.
        r = await s.post(f"{st.base_url}/console/login", allow_redirects=False,
                         data={"api_key": st.keys["finops"].secret, "next": "//evil.example/x"})  # fmt: skip
        assert r.headers["Location"] == "/console/"


async def test_a_bad_key_is_refused_with_a_message(st: ConsoleStack) -> None:
    async with session() as s:
        r = await s.post(f"{st.base_url}/console/login", json={"api_key": "rk_not_a_key"})
        assert r.status == 401 and "rk_not_a_" in (await r.json())["error"]["message"]
        r = await s.post(f"{st.base_url}/console/login", data={"api_key": "rk_nope"}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].endswith("&error=bad_key")
        r = await s.post(f"{st.base_url}/console/login", json={"api_key": ""})
        assert r.status == 400 and (await r.json())["error"]["param"] == "api_key"
        r = await s.post(f"{st.base_url}/console/login", data={"api_key": st.keys["admin"].secret},
                         headers={"Origin": "https://evil.example"}, allow_redirects=False)  # fmt: skip
        assert r.headers["Location"].endswith("&error=refused") and "Set-Cookie" not in r.headers


async def test_changes_without_the_csrf_token_are_refused(st: ConsoleStack) -> None:
    s, token = await signed_in(st, "admin")
    async with s:
        url = f"{st.base_url}/console/logout"
        for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": token, "Origin": "https://evil.example"},
                        {"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"}):  # fmt: skip
            r = await s.post(url, headers=headers, allow_redirects=False)
            body = await r.json()
            assert r.status == 403 and body["error"]["code"] == "csrf", (headers, body)
        assert (await s.get(f"{st.base_url}/console/api/session")).status == 200  # still signed in
        r = await s.post(url, headers={"X-CSRF-Token": token, "Origin": st.base_url}, allow_redirects=False)
        assert r.status == 303 and "Max-Age=0" in r.headers["Set-Cookie"]


@pytest.mark.parametrize("query, param, words", [
    ({"from": "2031-3-1", "to": "2031-03-31"}, "from", "a date like"),
    ({"from": "2031-03-01"}, "to", "give both"),
    ({"from": "2031-03-31", "to": "2031-03-01"}, "to", "before"),
    ({"from": "2030-01-01", "to": "2031-03-01"}, "to", "at most 400 days"),
    ({"from": "2031-02-30", "to": "2031-03-01"}, "from", "a date like"),
    ({"by": "colour"}, "by", "must be one of"),
    ({"scope": "planet:mars"}, "scope", "team:<team id>"),
])  # fmt: skip
async def test_bad_input_is_400_with_what_to_send(st: ConsoleStack, query: dict[str, str], param: str,
                                                  words: str) -> None:  # fmt: skip
    s, _ = await signed_in(st, "admin")
    async with s:
        r = await s.get(f"{st.base_url}/console/api/chargeback", params=query)
        body = await r.json()
        assert r.status == 400 and body["error"]["param"] == param and words in body["error"]["message"], body


async def test_an_unknown_scope_reads_as_no_usage_not_an_error(st: ConsoleStack) -> None:
    # Scopes are filters in the ledger's Usage (as for the CLI): an id nobody used has no rows.
    s, _ = await signed_in(st, "admin")
    async with s:
        r = await s.get(f"{st.base_url}/console/api/chargeback", params={**MARCH, "scope": "team:acme/nobody"})
        d = await r.json()
        assert r.status == 200 and d["rows"] == [] and d["total"]["requests"] == 0


async def test_unknown_paths_are_404_json_with_security_headers(st: ConsoleStack) -> None:
    s, _ = await signed_in(st, "admin")
    async with s:
        for path in ("/console/nope", "/console/api/nope", "/console/static/routes.py",
                     "/console/static/%2E%2E/routes.py", "/console/a/b"):
            r = await s.get(st.base_url + path)
            assert r.status == 404 and (await r.json())["error"]["message"], path
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        for path in ("/console/overview", "/console/api/overview", "/console/static/console.js", "/console/login"):
            r = await s.get(st.base_url + path)
            assert r.status == 200, path
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_overview_matches_the_ledgers_usage(st: ConsoleStack) -> None:
    key = st.keys["admin"].secret
    s, _ = await signed_in(st, "admin")
    async with s:
        d = await (await s.get(f"{st.base_url}/console/api/overview", params=MARCH)).json()
    [whole] = await st.usage(key, "2031-03-01", "2031-04-01", [])
    t = d["total"]
    assert (t["requests"], t["tokens"], t["spend_usd"], t["savings_usd"], t["cache_savings_usd"], t["wrong_hits"]) \
        == (whole.requests, whole.prompt_tokens + whole.completion_tokens, usd(whole.cost), usd(whole.savings),
            usd(whole.cache_savings), whole.wrong_hits)  # fmt: skip
    assert t["routing_savings_nano_usd"] == whole.routing_savings > 0 and whole.cache_savings > 0
    tiers = {r.group["tier"]: r for r in await st.usage(key, "2031-03-01", "2031-04-01", ["tier"])}
    assert {x["tier"]: x["spend_nano_usd"] for x in d["tiers"]} == {k: r.cost for k, r in tiers.items()}
    days = {r.group["day"]: r for r in await st.usage(key, "2031-03-01", "2031-04-01", ["day"])}
    assert len(d["daily"]) == 31 and len(days) == 12
    for x in d["daily"]:
        r = days.get(x["day"])
        assert (x["requests"], x["cache_hits"]) == ((r.requests, r.cache_hits) if r else (0, 0))


async def test_chargeback_rows_drill_down_and_match_usage(st: ConsoleStack) -> None:
    key = st.keys["finops"].secret
    s, _ = await signed_in(st, "finops")
    async with s:
        d = await (await s.get(f"{st.base_url}/console/api/chargeback", params={**MARCH, "by": "org"})).json()
        assert d["drill"] == "team"
        orgs = await st.usage(key, "2031-03-01", "2031-04-01", ["org"])
        assert [(x["id"], x["spend_usd"]) for x in d["rows"]] == [(r.group["org"], usd(r.cost)) for r in orgs]
        q = {**MARCH, "by": "user", "scope": f"team:{st.seeded.teams['eng']}"}
        d = await (await s.get(f"{st.base_url}/console/api/chargeback", params=q)).json()
        users = await st.usage(key, "2031-03-01", "2031-04-01", ["user"], ("team", st.seeded.teams["eng"]))
        assert [x["id"] for x in d["rows"]] == [r.group["user"] for r in users] and d["drill"] == "key"
        assert d["total"]["requests"] == sum(r.requests for r in users) > 0


async def rationer_cli(target: str, token: str, *args: str) -> str:
    env = {**os.environ, "RATIONER_LEDGER_ADDRESS": target, "RATIONER_ADMIN_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rationer.cli.main", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.parametrize("who, by", [("admin", "team"), ("admin", "key"), ("admin", "project"), ("bob", "user")])
async def test_csv_export_is_byte_identical_to_the_cli(st: ConsoleStack, who: str, by: str) -> None:
    s, _ = await signed_in(st, who)
    async with s:
        r = await s.get(f"{st.base_url}/console/api/chargeback.csv", params={**MARCH, "by": by})
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
        name = f"chargeback-2031-03-01-2031-03-31-by-{by}.csv"
        assert r.headers["Content-Disposition"] == f'attachment; filename="{name}"'
        body = await r.read()
    cli = await rationer_cli(st.ledger.target, st.keys[who].secret, "report", "chargeback", "--period", "2031-03",
                             "--by", by, "--format", "csv")  # fmt: skip
    assert body == cli.encode() and body.count(b"\n") >= 3


async def test_a_viewer_sees_only_its_team_and_a_member_its_org(st: ConsoleStack) -> None:
    s, _ = await signed_in(st, "viewer")
    async with s:
        d = await (await s.get(f"{st.base_url}/console/api/chargeback", params={**MARCH, "by": "team"})).json()
        assert [x["id"] for x in d["rows"]] == [st.seeded.teams["eng"]]
        q = {**MARCH, "by": "user", "scope": f"team:{st.seeded.teams['fin']}"}
        r = await s.get(f"{st.base_url}/console/api/chargeback", params=q)
        body = await r.json()
        assert r.status == 403 and "only its own team" in body["error"]["message"], body
    s, _ = await signed_in(st, "member")
    async with s:
        d = await (await s.get(f"{st.base_url}/console/api/chargeback", params={**MARCH, "by": "org"})).json()
        assert [x["id"] for x in d["rows"]] == [st.seeded.orgs["globex"]]


async def test_a_revoked_key_ends_its_session_at_the_next_call(st: ConsoleStack, tmp_path: Path) -> None:
    k = await st.ledger.admin.create_key(team_id=st.seeded.teams["fin"], service_account="revoke-me", role="finops")
    async with session() as s:
        r = await s.post(f"{st.base_url}/console/login", json={"api_key": k.secret})
        assert r.status == 200
        assert (await s.get(f"{st.base_url}/console/api/overview")).status == 200
        await st.ledger.admin.revoke_key(k.key.key_id)
        r = await s.get(f"{st.base_url}/console/api/overview")
        assert r.status == 401 and (await r.json())["error"]["code"] == "session_ended"
        assert "Max-Age=0" in r.headers["Set-Cookie"]


async def test_a_pages_change_route_gets_csrf_checked_before_its_handler(st: ConsoleStack) -> None:
    """The contract other pages rely on (docs/console.md, "Adding a page"), on a page of the test's own."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer
    from pydantic import SecretStr

    from services.router.console.context import Ctx
    from services.router.console.registry import Page, Route
    from services.router.console.routes import Console
    from services.router.settings import ConsoleSettings

    calls: list[str] = []

    async def echo(ctx: Ctx) -> dict[str, object]:
        calls.append(ctx.session.key_id)
        return {"got": await ctx.json(), "role": ctx.session.role, "who": (await ctx.ledger.whoami()).key_id}

    page = Page(slug="echo", title="Echo", routes=(Route("POST", "echo/{thing}", echo),))
    console = Console(ConsoleSettings(secret=SecretStr("x" * 32)), st.ledger.client, st.clock, lambda r: "rid",
                      pages=[page])  # fmt: skip
    app = web.Application()
    console.mount(app)
    async with TestServer(app) as server, session() as s:
        base = str(server.make_url(""))
        token = (await (await s.post(f"{base}/console/login", json={"api_key": st.keys["bob"].secret})).json())[
            "csrf_token"]
        r = await s.post(f"{base}/console/api/echo/a", json={"n": 1})
        assert r.status == 403 and (await r.json())["error"]["code"] == "csrf" and calls == []
        r = await s.post(f"{base}/console/api/echo/a", json={"n": 1}, headers={"X-CSRF-Token": token})
        assert r.status == 200 and await r.json() == {"got": {"n": 1}, "role": "member",
                                                        "who": st.keys["bob"].key_id}  # fmt: skip
        r = await s.post(f"{base}/console/api/echo/a", data=b"[1]", headers={"X-CSRF-Token": token})
        assert r.status == 400 and "JSON object" in (await r.json())["error"]["message"]
