"""The console's JSON routes against generated input: never a 5xx, every refusal in the door's error JSON.

Every route every page registers (services/router/console/pages) is called, as an admin and as
a viewer, with generated path ids, query strings and JSON bodies drawn from all of Unicode
(the parameter names the pages read, plus unknown ones), and so is the sign-in form. The
invariants, per response: the status is below 500; a 4xx carries ``{"error": {"message": ...}}``
with a non-empty message; a page route never answers 200 to a caller its role does not allow
to change anything (a viewer's unsafe call is refused). Afterwards the stack still answers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.router.console.registry import Route, discover
from tests.integration.test_console_http import session, signed_in
from testsupport.console_stack import ConsoleStack, running_console_stack

ROUTES = [r for page in discover() for r in page.routes]
# What the pages read (from their handlers and docs/console.md), and names nobody reads.
PARAMS = ["from", "to", "by", "org", "team", "user", "key", "project", "model", "tier", "status", "cache",
          "cursor", "page_size", "limit", "action", "revoked", "budget_id", "webhook_id", "scope", "x"]  # fmt: skip
text = st.text(max_size=40)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                      st.floats(allow_nan=False), text)  # fmt: skip
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3),
                          max_leaves=8)  # fmt: skip
BODY_KEYS = ["user_id", "team_id", "name", "project", "role", "allowed_tiers", "ttl_days", "expires_at", "scope",
             "unit", "period", "hard_limit", "soft_fraction", "alert_fractions", "url", "budget_id", "org_id",
             "log_prompts", "api_key", "x"]  # fmt: skip
body_keys = st.sampled_from(BODY_KEYS)
bodies = st.one_of(st.none(), json_value, st.dictionaries(body_keys, json_value, max_size=6))
queries = st.dictionaries(st.sampled_from(PARAMS), text, max_size=5)


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ConsoleStack]:
    # A stack of its own: generated admin calls may create keys and budgets.
    async with running_console_stack(tmp_path_factory.mktemp("console-fuzz")) as s:
        yield s


def _url(st_: ConsoleStack, route: Route, ident: str) -> str:
    path = re.sub(r"\{[^}]+\}", lambda _: quote(ident, safe="") or "x", route.path)
    return f"{st_.base_url}/console/api/{path}"


async def _check(r: aiohttp.ClientResponse, what: str) -> None:
    assert r.status < 500, f"{what}: {r.status} {await r.text()}"
    if r.status >= 400:
        out: Any = await r.json()
        assert isinstance(out, dict) and str(out["error"]["message"]).strip(), f"{what}: {out}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), who=st.sampled_from(["admin", "viewer"]), ident=text, query=queries,
       body=bodies)  # fmt: skip
async def test_generated_calls_to_every_console_route_get_no_5xx(stack: ConsoleStack, route: Route, who: str,
                                                                 ident: str, query: dict[str, str],
                                                                 body: object) -> None:  # fmt: skip
    s, token = await signed_in(stack, who)
    async with s:
        headers = {"X-CSRF-Token": token, "Origin": stack.base_url}
        kwargs: dict[str, Any] = {"params": query, "headers": headers}
        if route.method != "GET":
            kwargs["json"] = body
        r = await s.request(route.method, _url(stack, route, ident), **kwargs)
        await _check(r, f"{who} {route.method} {route.path} {query} {body!r}")
        if who == "viewer" and route.method != "GET":
            assert r.status >= 400, f"a viewer changed something: {route.method} {route.path} {body!r}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(bodies, text.map(lambda t: {"api_key": t})), as_form=st.booleans())
async def test_generated_sign_ins_are_refused_cleanly(stack: ConsoleStack, body: object, as_form: bool) -> None:
    async with session() as s:
        if as_form and isinstance(body, dict):
            # Encoded here: aiohttp's client refuses some generated names before sending them.
            form = urlencode({str(k): str(v) for k, v in body.items()})
            r = await s.post(f"{stack.base_url}/console/login", data=form, allow_redirects=False,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        else:
            r = await s.post(f"{stack.base_url}/console/login", json=body, allow_redirects=False)
        assert r.status < 500, await r.text()
        assert r.status != 200 or body == {"api_key": stack.keys["admin"].secret}


async def test_the_stack_still_answers_after_the_generated_calls(stack: ConsoleStack, tmp_path: Path) -> None:
    s, _ = await signed_in(stack, "admin")
    async with s:
        r = await s.get(f"{stack.base_url}/console/api/overview", params={"from": "2031-03-01", "to": "2031-03-31"})
        assert r.status == 200, await r.text()
