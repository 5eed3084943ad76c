"""Fixtures for the console's browser tests: a seeded stack in its own thread and a headless Chromium.

Skipped, with the reason, only where Chromium or its driver is missing; `.ci/run` installs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from testsupport import browser
from testsupport.console_stack import ConsoleStack, console_stack_thread


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    why = browser.missing()
    if why:
        pytest.skip(f"console browser tests need a headless Chromium: {why}")
    with console_stack_thread(tmp_path_factory.mktemp("console-browser")) as st:
        yield st


@pytest.fixture(scope="module")
def driver(stack: ConsoleStack) -> Iterator[Any]:
    d = browser.chromium()
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture
def fresh(driver: Any, stack: ConsoleStack) -> Any:
    """The module's driver, signed out (its cookies dropped) before the test."""
    driver.get(stack.base_url + "/console/login")
    driver.delete_all_cookies()
    return driver
