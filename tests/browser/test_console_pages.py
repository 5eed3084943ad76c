"""The console in a real headless Chromium against a real seeded stack: what a person sees."""

from __future__ import annotations

import json
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from services.ledger.report import render, usd
from testsupport.browser import sign_in, wait_ready
from testsupport.console_seed import IMG_MODEL, SCRIPT_PROJECT
from testsupport.console_stack import ConsoleStack

MARCH = "from=2031-03-01&to=2031-03-31"


def card(d: Any, metric: str) -> str:
    return str(d.find_element(By.CSS_SELECTOR, f'[data-metric="{metric}"] .value').text)


def column(d: Any, table: str, col: str) -> list[str]:
    return [e.text for e in d.find_elements(By.CSS_SELECTOR, f"#{table} tbody td[data-col='{col}']")]


def fetch(d: Any, method: str, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A same-origin fetch from the page (with its cookie), as the page's own script would make it."""
    script = """const done = arguments[arguments.length - 1];
      fetch(arguments[1], {method: arguments[0], headers: arguments[2], credentials: "same-origin",
                           redirect: "manual"})
        .then(async (r) => done({status: r.status, text: await r.text()}))
        .catch((e) => done({status: -1, text: String(e)}));"""
    return dict(d.execute_async_script(script, method, path, headers or {}))


def test_sign_in_and_overview_show_the_ledgers_numbers(fresh: Any, stack: ConsoleStack) -> None:
    sign_in(fresh, stack.base_url, stack.keys["admin"].secret)  # lands on this month: March 2031
    assert fresh.current_url.endswith("/console/overview")
    assert fresh.find_element(By.CSS_SELECTOR, "#who .role").text == "admin"
    [t] = stack.run(stack.usage(stack.keys["admin"].secret, "2031-03-01", "2031-04-01", []))
    assert card(fresh, "spend") == f"${usd(t.cost)}"
    assert card(fresh, "requests") == f"{t.requests:,}"
    assert card(fresh, "tokens") == f"{t.prompt_tokens + t.completion_tokens:,}"
    assert card(fresh, "savings") == f"${usd(t.savings)}"
    assert card(fresh, "cache-savings") == f"${usd(t.cache_savings)}"
    assert card(fresh, "routing-savings") == f"${usd(t.routing_savings)}"
    assert card(fresh, "wrong-hits") == str(t.wrong_hits)
    assert card(fresh, "cache-hit-rate") == f"{t.cache_hits / t.requests * 100:.1f}%"
    assert len(fresh.find_elements(By.CSS_SELECTOR, "svg.chart")) == 7  # tier mix + six daily series
    # The period picker narrows the range; the numbers follow the ledger's.
    fresh.get(stack.base_url + "/console/overview?from=2031-03-03&to=2031-03-05")
    assert wait_ready(fresh) == "1"
    [part] = stack.run(stack.usage(stack.keys["admin"].secret, "2031-03-03", "2031-03-06", []))
    assert card(fresh, "spend") == f"${usd(part.cost)}" and part.cost < t.cost
    assert fresh.find_element(By.NAME, "from").get_attribute("value") == "2031-03-03"


def test_chargeback_rows_sort_and_drill_down(fresh: Any, stack: ConsoleStack) -> None:
    key = stack.keys["finops"].secret
    sign_in(fresh, stack.base_url, key, f"/console/chargeback?by=team&{MARCH}")
    teams = stack.run(stack.usage(key, "2031-03-01", "2031-04-01", ["team"]))
    by_spend = sorted(teams, key=lambda r: -r.cost)
    assert column(fresh, "chargeback", "label") == [r.group["team"] for r in by_spend]
    assert column(fresh, "chargeback", "spend_nano_usd") == [f"${usd(r.cost)}" for r in by_spend]
    fresh.find_element(By.CSS_SELECTOR, "#chargeback th[data-col='label']").click()  # sort by name
    assert column(fresh, "chargeback", "label") == sorted(r.group["team"] for r in teams)
    eng = stack.seeded.teams["eng"]
    row = next(e for e in fresh.find_elements(By.CSS_SELECTOR, "#chargeback tbody tr") if e.text.startswith(eng))
    row.click()
    assert wait_ready(fresh) == "1" and f"scope=team%3A{eng.replace('/', '%2F')}" in fresh.current_url
    users = stack.run(stack.usage(key, "2031-03-01", "2031-04-01", ["user"], ("team", eng)))
    assert sorted(column(fresh, "chargeback", "requests")) == sorted(f"{r.requests:,}" for r in users)
    assert fresh.find_element(By.CSS_SELECTOR, ".crumbs .here").text == f"team:{eng}"


def test_csv_export_matches_the_cli_rendering(fresh: Any, stack: ConsoleStack) -> None:
    key = stack.keys["admin"].secret
    sign_in(fresh, stack.base_url, key, f"/console/chargeback?by=project&{MARCH}")
    href = fresh.find_element(By.ID, "csv").get_attribute("href")
    got = fetch(fresh, "GET", href)
    rows = stack.run(stack.usage(key, "2031-03-01", "2031-04-01", ["project"]))
    # What `rationer report chargeback --format csv` prints: render() and a newline
    # (tests/integration/test_console_http.py runs the CLI itself for the byte comparison).
    assert got["status"] == 200 and got["text"] == render(rows, "project", "csv", "2031-03") + "\n"


def test_a_viewer_sees_its_own_team_only_and_the_refusal_cleanly(fresh: Any, stack: ConsoleStack) -> None:
    sign_in(fresh, stack.base_url, stack.keys["viewer"].secret, f"/console/chargeback?by=team&{MARCH}")
    assert column(fresh, "chargeback", "label") == [stack.seeded.teams["eng"]]
    fresh.get(stack.base_url + f"/console/chargeback?by=user&scope=team:{stack.seeded.teams['fin']}&{MARCH}")
    assert wait_ready(fresh) == "error"
    alert = fresh.find_element(By.CSS_SELECTOR, "#main .error").text
    assert "(403)" in alert and "only its own team" in alert


def test_posts_without_the_csrf_token_are_refused(fresh: Any, stack: ConsoleStack) -> None:
    sign_in(fresh, stack.base_url, stack.keys["admin"].secret)
    got = fetch(fresh, "POST", "/console/logout")
    assert got["status"] == 403 and json.loads(got["text"])["error"]["code"] == "csrf"
    got = fetch(fresh, "POST", "/console/logout", {"X-CSRF-Token": "not-the-token"})
    assert got["status"] == 403
    fresh.get(stack.base_url + "/console/overview")
    assert wait_ready(fresh) == "1"  # still signed in
    fresh.find_element(By.CSS_SELECTOR, "form.logout button").click()  # the real form carries the token
    WebDriverWait(fresh, 10).until(lambda d: "/console/login" in d.current_url)
    assert "You are signed out." in fresh.find_element(By.CSS_SELECTOR, ".error").text


def test_script_in_names_and_tags_is_shown_as_text(fresh: Any, stack: ConsoleStack) -> None:
    sign_in(fresh, stack.base_url, stack.keys["admin"].secret, f"/console/chargeback?by=project&{MARCH}")
    assert SCRIPT_PROJECT in column(fresh, "chargeback", "label")
    fresh.get_log("browser")  # drain what earlier pages logged
    fresh.get(stack.base_url + f"/console/chargeback?by=model&{MARCH}")
    assert wait_ready(fresh) == "1"
    assert IMG_MODEL in column(fresh, "chargeback", "label")
    assert fresh.find_elements(By.CSS_SELECTOR, "#main img, #main script") == []
    # An executed payload would have opened an alert (every later command would fail) or
    # tripped the CSP, which Chromium logs as an error.
    assert fresh.find_element(By.TAG_NAME, "h1").text == "Chargeback"
    assert [e["message"] for e in fresh.get_log("browser") if e["level"] == "SEVERE"] == []
