"""The Budgets page in headless Chromium: real numbers, an edit that lands in the audit log, a viewer
who sees no edit controls and whose POSTs are refused, and no CSP violation or script error."""

from __future__ import annotations

from typing import Any

from services.ledger.report import usd
from testsupport import browser
from testsupport.console_stack import ConsoleStack


def _reload_and_wait(driver: Any, submit: Any) -> None:
    driver.execute_script("window.__before_submit = true")
    submit.click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(lambda d: d.execute_script(
        "return !window.__before_submit && document.body.getAttribute('data-ready')"))  # fmt: skip


def _severe(driver: Any) -> list[str]:
    # The refusals the test provokes (400, 403) are logged by Chromium as failed loads: not errors of the page.
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"
            and "the server responded with a status of 40" not in e["message"]]  # fmt: skip


def test_budgets_page_edit_lands_in_audit_and_viewer_cannot_change(fresh: Any, stack: ConsoleStack) -> None:
    from selenium.webdriver.common.by import By

    st, driver = stack, fresh
    ledger_view = st.run(st.ledger.admin.budget_status()).budgets
    browser.sign_in(driver, st.base_url, st.keys["finops"].secret, "/console/budgets")
    sections = driver.find_elements(By.CSS_SELECTOR, "section.budget")
    assert len(sections) == len(ledger_view) >= 2
    for sec in sections:
        want = next(s.budget for s in ledger_view if s.budget.id == sec.get_attribute("data-budget"))
        spent = sec.find_element(By.CSS_SELECTOR, '[data-metric="spent"] .value').text
        assert spent == f"${usd(want.spent)}"
        img = sec.find_element(By.CSS_SELECTOR, "img.burndown")
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0
    i = next(n for n, sec in enumerate(sections) if "team" in sec.find_element(By.TAG_NAME, "h2").text)
    bid = sections[i].get_attribute("data-budget")
    form = driver.find_element(By.ID, f"edit-{i}")
    limit = form.find_element(By.NAME, "hard_limit")
    limit.clear()
    limit.send_keys("77.25")
    _reload_and_wait(driver, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    after = {b.id: b.hard_limit for b in st.run(st.ledger.admin.list_budgets())}
    assert after[bid] == 77_250_000_000
    audit = [e for e in st.run(st.ledger.admin.list_audit(action="budgets.set")) if e.target == bid]
    assert audit[-1].actor == f"key:{st.keys['finops'].key_id}" and "77250000000" in audit[-1].after_json
    bad = driver.find_element(By.ID, "new-budget")
    bad.find_element(By.NAME, "scope").send_keys("team:" + st.seeded.teams["fin"])
    bad.find_element(By.NAME, "hard_limit").send_keys("-3")
    bad.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    msg = bad.find_element(By.CSS_SELECTOR, ".form-msg")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: "error" in (msg.get_attribute("class") or ""))
    assert "hard limit must be between $0" in msg.text and "(400)" in msg.text
    assert _severe(driver) == []


def test_a_viewer_sees_its_budget_without_controls_and_its_posts_are_refused(fresh: Any, stack: ConsoleStack) -> None:
    from selenium.webdriver.common.by import By

    st, driver = stack, fresh
    browser.sign_in(driver, st.base_url, st.keys["viewer"].secret, "/console/budgets")
    bid = f"budget:team:{st.seeded.teams['eng']}:usd:monthly"
    ids = [s.get_attribute("data-budget") for s in driver.find_elements(By.CSS_SELECTOR, "section.budget")]
    assert ids == [bid]
    for css in ("form", "button.test", "button.remove", "#new-budget"):
        assert driver.find_elements(By.CSS_SELECTOR, f"main {css}") == []
    refused = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Rationer.api('POST', 'budgets', {scope: 'team:x', hard_limit: '1'})"
        ".then(() => done('accepted'), (e) => done(e.status + ' ' + e.message));")
    assert refused.startswith("403 ") and "role 'viewer'" in refused
    assert _severe(driver) == []
