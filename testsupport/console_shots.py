"""Screenshots of every console page: ``python -m testsupport.console_shots`` (or scripts/console-screenshots).

Starts the seeded console stack (testsupport.console_stack), signs in with the
admin key in headless Chromium and saves ``docs/img/console-<slug>.png`` for
each page ``registry.discover`` finds (pages added later get shots with no
change here), plus ``console-login.png``. ``--only overview,budgets`` limits it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from services.router.console.registry import discover
from testsupport import browser
from testsupport.console_stack import console_stack_thread

WIDTH = 1360
MAX_HEIGHT = 3000


def _shoot(driver: Any, path: Path) -> None:
    """The whole page: the window grown to the document's height (capped)."""
    for _ in range(3):  # the window's chrome takes some height: converge on the document's
        height, inner, outer = driver.execute_script(
            "return [document.documentElement.scrollHeight, window.innerHeight, window.outerHeight]")
        if inner >= min(height, MAX_HEIGHT):
            break
        driver.set_window_size(WIDTH, min(max(int(height), 700), MAX_HEIGHT) + int(outer) - int(inner))
    driver.save_screenshot(str(path))


def shots(out: Path, only: set[str] | None = None) -> list[Path]:
    why = browser.missing()
    if why:
        raise SystemExit(f"console screenshots need a headless Chromium: {why}")
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="console-shots-") as tmp, console_stack_thread(Path(tmp)) as st:
        driver = browser.chromium(WIDTH, 900)
        try:
            if only is None or "login" in only:
                driver.get(st.base_url + "/console/login")
                saved.append(out / "console-login.png")
                _shoot(driver, saved[-1])
            browser.sign_in(driver, st.base_url, st.keys["admin"].secret)
            for page in discover():
                if only is not None and page.slug not in only:
                    continue
                query = f"?{urlencode(page.shot_params)}" if page.shot_params else ""
                driver.set_window_size(WIDTH, 900)
                driver.get(f"{st.base_url}/console/{page.slug}{query}")
                state = browser.wait_ready(driver)
                if state != "1":
                    print(f"warning: page {page.slug} rendered an error", file=sys.stderr)
                saved.append(out / f"console-{page.slug}.png")
                _shoot(driver, saved[-1])
        finally:
            driver.quit()
    return saved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--only", default="", help="comma-separated page slugs (and/or 'login')")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    for path in shots(args.out, only):
        print(path)


if __name__ == "__main__":
    main()
