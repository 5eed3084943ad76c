"""The console's Keys, Requests and Audit APIs against a real seeded stack (ledger + router door).

Every change goes through the ledger as the signed-in key: the ledger refuses what the role may
not do and writes the audit row; bad input is a 4xx with the door's error JSON, never a 500.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.test_console_http import session, signed_in
from tests.integration.test_ledger_cli import rationer
from testsupport.console_stack import ConsoleStack, running_console_stack

MARCH = {"from": "2031-03-01", "to": "2031-03-31"}
SCRIPT = "<script>alert('k')</script>"
IMG = '"><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
async def st(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ConsoleStack]:
    async with running_console_stack(tmp_path_factory.mktemp("console-keys")) as stack:
        yield stack


async def _api(s: aiohttp.ClientSession, st: ConsoleStack, method: str, path: str, token: str = "",
               body: object = None, params: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:  # fmt: skip
    headers = {"X-CSRF-Token": token, "Origin": st.base_url} if token else {}
    r = await s.request(method, f"{st.base_url}/console/api/{path}", json=body, params=params, headers=headers)
    return r.status, await r.json()


def _message(out: dict[str, object]) -> str:
    return str(out["error"]["message"])  # type: ignore[index]


async def test_a_new_keys_secret_is_shown_once_and_its_revoke_is_audited(st: ConsoleStack) -> None:
    s, token = await signed_in(st, "admin")
    async with s:
        r = await s.post(f"{st.base_url}/console/api/keys", headers={"X-CSRF-Token": token, "Origin": st.base_url},
                         json={"user_id": st.keys["bob"].user_id, "name": SCRIPT, "project": IMG,
                               "allowed_tiers": ["frontier-mini"], "ttl_days": 30})  # fmt: skip
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        made = await r.json()
        secret, key = made["secret"], made["key"]
        assert secret.startswith("rk-") and key["name"] == SCRIPT and key["project"] == IMG
        assert key["allowed_tiers"] == ["frontier-mini"] and key["expires_at"].startswith("2031-04-")
        assert (await st.ledger.client.authenticate(secret)).key_id == key["key_id"]
        listing = await (await s.get(f"{st.base_url}/console/api/keys")).text()
        assert key["key_id"] in listing and secret not in listing and secret[10:] not in listing
        status, out = await _api(s, st, "POST", f"keys/{key['key_id']}/revoke", token, {})
        assert status == 200 and out["key"]["state"] == "revoked"  # type: ignore[index]
        status, audit = await _api(s, st, "GET", "audit", params=MARCH)
        mine = [e for e in audit["entries"] if e["target"] == key["key_id"]]  # type: ignore[attr-defined]
        assert [e["action"] for e in mine] == ["keys.create", "keys.revoke"]
        assert {e["actor"] for e in mine} == {f"key:{st.keys['admin'].key_id}"}
        assert mine[1]["before"]["revoked_at_us"] is None and mine[1]["after"]["revoked_at_us"] is not None
        assert secret not in json.dumps(audit)
        _, revoked = await _api(s, st, "GET", "audit", params={**MARCH, "action": "keys.revoke"})
        assert [e["target"] for e in revoked["entries"]] == [key["key_id"]]  # type: ignore[attr-defined]
        # The CSV is the CLI's: `rationer report audit --format csv` for the same month, as the same key.
        csv = await (await s.get(f"{st.base_url}/console/api/audit.csv", params=MARCH)).text()
        rc, out_cli, err = await rationer(st.ledger.target, "report", "audit", "--format", "csv", "--period",
                                          "2031-03", token=st.keys["admin"].secret)  # fmt: skip
        assert rc == 0 and csv == out_cli, err


async def test_tiers_and_expiry_change_and_bad_input_is_a_clear_4xx(st: ConsoleStack) -> None:
    s, token = await signed_in(st, "admin")
    async with s:
        kid = st.keys["batch"].key_id
        status, out = await _api(s, st, "PATCH", f"keys/{kid}", token, {"allowed_tiers": ["local-small"],
                                                                         "expires": "2031-06-01"})  # fmt: skip
        assert status == 200, out
        assert out["key"]["allowed_tiers"] == ["local-small"]  # type: ignore[index]
        assert out["key"]["expires_at"] == "2031-06-01T00:00:00+00:00"  # type: ignore[index]
        status, out = await _api(s, st, "PATCH", f"keys/{kid}", token, {"allowed_tiers": [], "expires": ""})
        assert status == 200 and out["key"]["expires_at"] == "" and out["key"]["allowed_tiers"] == []  # type: ignore[index]
        for path, body, code, words in (
            (f"keys/{kid}", {"expires": "soon"}, 400, "expires must be a date"),
            (f"keys/{kid}", {"expires": "2020-01-01"}, 400, "not in the future"),
            (f"keys/{kid}", {"allowed_tiers": "all"}, 400, "allowed_tiers must be a list"),
            (f"keys/{kid}", {"allowed_tiers": ["no-such-tier"]}, 400, "has a price"),
            (f"keys/{kid}", {"role": "admin"}, 400, "allowed_tiers and expires only"),
            ("keys/k_0000000000000000", {"expires": ""}, 404, "does not exist"),
            ("keys/%3Cscript%3E", {"expires": ""}, 400, "is not an id"),
        ):  # fmt: skip
            status, out = await _api(s, st, "PATCH", path, token, body)
            assert status == code and words in _message(out), (path, body, out)
        creates: list[tuple[dict[str, object], str]] = [
                            ({"user_id": st.keys["bob"].user_id, "ttl_days": -1}, "ttl_days"),
                            ({"user_id": st.keys["bob"].user_id, "role": "owner"}, "role must be one of"),
                            ({"user_id": "acme/eng/nobody@acme.test"}, "does not exist"),
                            ({}, "exactly one of user_id")]  # fmt: skip
        for create, words in creates:
            status, out = await _api(s, st, "POST", "keys", token, create)
            assert 400 <= status < 500 and words in _message(out), (create, out)
        status, out = await _api(s, st, "POST", "keys/k_0000000000000000/revoke", token, {})
        assert status == 404


async def test_a_viewer_sees_its_own_keys_and_team_and_changes_nothing(st: ConsoleStack) -> None:
    viewer, bob = st.keys["viewer"], st.keys["bob"]
    s, token = await signed_in(st, "viewer")
    async with s:
        status, out = await _api(s, st, "GET", "keys")
        assert status == 200 and [k["key_id"] for k in out["keys"]] == [viewer.key_id]  # type: ignore[attr-defined]
        assert out["can_manage"] is False
        for method, path, body in (("POST", "keys", {"user_id": viewer.user_id}),
                                   ("POST", f"keys/{bob.key_id}/revoke", {}),
                                   ("PATCH", f"keys/{viewer.key_id}", {"expires": ""})):  # fmt: skip
            status, out = await _api(s, st, method, path, token, body)
            assert status == 403 and "role 'viewer'" in _message(out), out
        status, out = await _api(s, st, "GET", "requests", params={**MARCH, "page_size": "500"})
        assert status == 200 and out["requests"]
        assert {r["team_id"] for r in out["requests"]} == {viewer.team_id}  # type: ignore[attr-defined]
        status, out = await _api(s, st, "GET", "requests", params={**MARCH, "team": st.seeded.teams["ops"]})
        assert status == 403 and "own team" in _message(out)
        status, out = await _api(s, st, "GET", "requests", params={**MARCH, "key": st.keys["batch"].key_id})
        assert status == 404
        status, out = await _api(s, st, "GET", "audit", params=MARCH)
        assert status == 403 and "read the audit log" in _message(out)
    assert (await st.ledger.client.authenticate(bob.secret)).key_id == bob.key_id  # nothing was revoked


async def test_requests_page_filters_and_bad_input(st: ConsoleStack) -> None:
    s, _ = await signed_in(st, "finops")
    async with s:
        status, first = await _api(s, st, "GET", "requests", params={**MARCH, "page_size": "5"})
        assert status == 200 and len(first["requests"]) == 5 and first["next_cursor"]  # type: ignore[arg-type]
        status, second = await _api(s, st, "GET", "requests", params={**MARCH, "page_size": "5",
                                                                      "cursor": str(first["next_cursor"])})  # fmt: skip
        ids = [r["event_id"] for r in first["requests"] + second["requests"]]  # type: ignore[operator]
        assert status == 200 and len(set(ids)) == 10
        times = [r["time"] for r in first["requests"] + second["requests"]]  # type: ignore[operator]
        assert times == sorted(times, reverse=True)
        row = first["requests"][0]  # type: ignore[index]
        assert {"time", "key_id", "team_id", "tier", "model", "tokens", "cost_usd", "savings_usd", "cache",
                "latency_ms", "status"} <= set(row) and row["prompt"] == ""  # fmt: skip
        _, hits = await _api(s, st, "GET", "requests", params={**MARCH, "cache": "hit", "page_size": "500"})
        assert hits["requests"] and all(r["cache"] == "hit" for r in hits["requests"])  # type: ignore[attr-defined]
        for params, words in (({"page_size": "501"}, "page_size must be between 1 and 500"),
                              ({"page_size": "ten"}, "page_size must be a whole number"),
                              ({"cursor": "garbage!"}, "not one this ledger handed out"),
                              ({"status": "418"}, "status must be one of"), ({"cache": "maybe"}, "cache must be"),
                              ({"from": "2031-13-01", "to": "2031-03-02"}, "from must be a date"),
                              ({"key": "k_0000000000000000"}, "no API key")):  # fmt: skip
            status, out = await _api(s, st, "GET", "requests", params={**MARCH, **params})
            assert status in (400, 404) and words in _message(out), (params, out)


async def test_prompt_logging_is_off_until_an_org_turns_it_on(st: ConsoleStack, tmp_path: Path) -> None:
    """Through the router: off, no prompt text reaches the ledger's database; on, the Requests page shows it."""
    async def chat(who: str, text: str) -> None:
        async with session() as c:
            r = await c.post(f"{st.base_url}/v1/chat/completions", json={"model": "frontier-mini",
                             "messages": [{"role": "user", "content": text}], "max_tokens": 16},
                             headers={"Authorization": f"Bearer {st.keys[who].secret}"})  # fmt: skip
            assert r.status == 200, await r.text()

    await chat("member", "PROMPT-OFF-globex <b>hi</b>")
    await st.ledger.admin.set_org_settings(st.seeded.orgs["acme"], log_prompts=True)
    try:
        st.ledger.deps.ledger.invalidate()
        await chat("bob", "PROMPT-ON-acme <script>x</script>")
    finally:
        await st.ledger.admin.set_org_settings(st.seeded.orgs["acme"], log_prompts=False)
    s, _ = await signed_in(st, "admin")
    async with s:
        status, out = await _api(s, st, "GET", "requests", params={"page_size": "2"})
    rows = {r["key_id"]: r for r in out["requests"]}  # type: ignore[attr-defined]
    assert status == 200 and set(rows) == {st.keys["bob"].key_id, st.keys["member"].key_id}
    assert rows[st.keys["bob"].key_id]["prompt"] == "user: PROMPT-ON-acme <script>x</script>"
    assert rows[st.keys["member"].key_id]["prompt"] == ""
    assert all(r["status"] == 200 and r["tier"] == "frontier-mini" for r in rows.values())
    db = Path(st.ledger.deps.ledger.store._path)  # type: ignore[attr-defined]  # the SQLite file, -wal, -shm
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert b"PROMPT-OFF-globex" not in raw and b"PROMPT-ON-acme" in raw
