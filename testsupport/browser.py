"""Headless Chromium through Selenium (Debian's chromium + chromium-driver), for console tests and shots."""

from __future__ import annotations

import os
import shutil
from typing import Any

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _first(paths: tuple[str, ...], name: str) -> str | None:
    return next((p for p in paths if os.path.exists(p)), None) or shutil.which(name)


def missing() -> str:
    """Why a browser cannot start here ("" when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if _first(CHROMIUM, "chromium") is None:
        return "chromium is not installed (apt-get install chromium chromium-driver; .ci/run does this)"
    if _first(DRIVER, "chromedriver") is None:
        return "chromedriver is not installed (apt-get install chromium-driver; .ci/run does this)"
    return ""


def chromium(width: int = 1360, height: int = 1000) -> Any:
    """A headless Chromium WebDriver; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = _first(CHROMIUM, "chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--disable-extensions", "--no-first-run",
                "--force-device-scale-factor=1", "--lang=en-US"):  # fmt: skip
        opts.add_argument(arg)
    # Console errors (a CSP violation, an exception) are read back by the tests.
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(_first(DRIVER, "chromedriver") or ""), options=opts)


def sign_in(driver: Any, base_url: str, api_key: str, path: str = "/console/overview") -> None:
    """Sign in through the real form, land on ``path`` and wait for its page to render."""
    from selenium.webdriver.common.by import By

    driver.get(base_url + path)
    driver.find_element(By.NAME, "api_key").send_keys(api_key)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait_ready(driver)


def wait_ready(driver: Any, timeout: float = 20.0) -> str:
    """Wait until the shell marks the page rendered (body[data-ready]); returns "1" or "error"."""
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d: Any) -> str | None:
        return d.execute_script("return document.body && document.body.getAttribute('data-ready')")  # type: ignore[no-any-return]

    return str(WebDriverWait(driver, timeout).until(ready))
