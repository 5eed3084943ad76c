"""Keys, Requests and Audit in a real headless Chromium against a real seeded stack."""

from __future__ import annotations

from typing import Any

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from testsupport.browser import sign_in, wait_ready
from testsupport.console_stack import ConsoleStack

SCRIPT = "<script>alert('k')</script>"
IMG = '"><img src=x onerror=alert(1)>'
MARCH = "from=2031-03-01&to=2031-03-31"


def column(d: Any, table: str, col: str) -> list[str]:
    return [e.text for e in d.find_elements(By.CSS_SELECTOR, f"#{table} tbody td[data-col='{col}']")]


def until(d: Any, cond: Any) -> None:
    """Wait for ``cond`` across a reload (elements of the old page go stale)."""
    WebDriverWait(d, 20, ignored_exceptions=(StaleElementReferenceException,)).until(cond)


def severe(d: Any) -> list[str]:
    return [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]


def test_a_new_key_shows_its_secret_once_and_its_revoke_shows_in_audit(fresh: Any, stack: ConsoleStack) -> None:
    sign_in(fresh, stack.base_url, stack.keys["admin"].secret, "/console/keys")
    form = fresh.find_element(By.ID, "create-key")
    form.find_element(By.NAME, "user_id").send_keys(stack.keys["bob"].user_id)
    form.find_element(By.NAME, "name").send_keys(SCRIPT)
    form.find_element(By.NAME, "project").send_keys(IMG)
    form.find_element(By.ID, "create").click()
    secret_el = WebDriverWait(fresh, 20).until(lambda d: d.find_element(By.ID, "secret"))
    secret = secret_el.text
    assert secret.startswith("rk-") and "shown once" in fresh.find_element(By.ID, "notice").text
    key_id = fresh.find_element(By.ID, "notice").text.split("Created ", 1)[1].split(".", 1)[0]
    fresh.refresh()
    assert wait_ready(fresh) == "1"
    assert fresh.find_elements(By.ID, "secret") == [] and secret not in fresh.page_source  # never again
    assert SCRIPT in column(fresh, "keys", "name") and IMG in column(fresh, "keys", "project")
    assert fresh.find_elements(By.CSS_SELECTOR, "#main img, #main script") == []
    row = next(r for r in fresh.find_elements(By.CSS_SELECTOR, "#keys tbody tr") if r.text.startswith(key_id))
    row.click()
    fresh.find_element(By.ID, "revoke-key").click()
    WebDriverWait(fresh, 10).until(ec.alert_is_present()).accept()
    until(fresh, lambda d: key_id not in column(d, "keys", "key_id"))  # revoked keys are hidden by default
    fresh.get(stack.base_url + f"/console/audit?{MARCH}&action=keys.revoke")
    assert wait_ready(fresh) == "1"
    assert column(fresh, "audit", "target") == [key_id]
    assert column(fresh, "audit", "actor") == [f"key:{stack.keys['admin'].key_id}"]
    assert severe(fresh) == []


def test_tiers_and_expiry_are_set_in_the_editor(fresh: Any, stack: ConsoleStack) -> None:
    kid = stack.keys["batch"].key_id
    sign_in(fresh, stack.base_url, stack.keys["admin"].secret, "/console/keys")
    until(fresh, lambda d: kid in column(d, "keys", "key_id"))
    next(r for r in fresh.find_elements(By.CSS_SELECTOR, "#keys tbody tr") if r.text.startswith(kid)).click()
    editor = fresh.find_element(By.ID, "edit-key")
    editor.find_element(By.CSS_SELECTOR, "input[name=edit-tiers][value=local-small]").click()
    fresh.execute_script("arguments[0].value = '2031-07-01'", editor.find_element(By.NAME, "expires"))
    editor.find_element(By.ID, "save-key").click()
    until(fresh, lambda d: "2031-07-01" in " ".join(column(d, "keys", "expires_at")))
    row = next(r for r in fresh.find_elements(By.CSS_SELECTOR, "#keys tbody tr") if r.text.startswith(kid))
    assert "local-small" in row.text and "2031-07-01" in row.text


def test_a_viewer_sees_its_own_key_and_team_and_no_controls(fresh: Any, stack: ConsoleStack) -> None:
    viewer = stack.keys["viewer"]
    sign_in(fresh, stack.base_url, viewer.secret, "/console/keys")
    until(fresh, lambda d: column(d, "keys", "key_id") == [viewer.key_id])
    assert fresh.find_elements(By.ID, "create-key") == []
    fresh.find_element(By.CSS_SELECTOR, "#keys tbody tr").click()  # read-only: no editor opens
    assert fresh.find_elements(By.ID, "edit-key") == []
    fresh.get(stack.base_url + f"/console/requests?{MARCH}&page_size=500")
    assert wait_ready(fresh) == "1"
    until(fresh, lambda d: column(d, "requests", "team_id"))
    assert set(column(fresh, "requests", "team_id")) == {viewer.team_id}
    assert "Audit" not in fresh.find_element(By.TAG_NAME, "nav").text
    fresh.get(stack.base_url + f"/console/requests?{MARCH}&team={stack.seeded.teams['ops']}")
    assert wait_ready(fresh) == "error"
    assert "own team" in fresh.find_element(By.CSS_SELECTOR, "[role=alert]").text


def test_requests_search_and_paging(fresh: Any, stack: ConsoleStack) -> None:
    sign_in(fresh, stack.base_url, stack.keys["finops"].secret, f"/console/requests?{MARCH}&page_size=4")
    until(fresh, lambda d: len(column(d, "requests", "time")) == 4)
    first = column(fresh, "requests", "time")
    assert len(first) == 4 and first == sorted(first, reverse=True)
    fresh.find_element(By.ID, "next").click()
    until(fresh, lambda d: "cursor=" in d.current_url)
    assert wait_ready(fresh) == "1"
    second = column(fresh, "requests", "time")
    assert len(second) == 4 and max(second) <= min(first)
    form = fresh.find_element(By.ID, "search")
    form.find_element(By.CSS_SELECTOR, "select[name=cache] option[value=hit]").click()
    form.find_element(By.ID, "go").click()
    until(fresh, lambda d: "cache=hit" in d.current_url)
    assert wait_ready(fresh) == "1" and "cursor" not in fresh.current_url
    assert set(column(fresh, "requests", "cache")) == {"hit"}
