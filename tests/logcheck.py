"""The log-secrets check: no key, token or prompt text in any log a test run writes.

Loaded by tests/conftest.py for every run that collects tests under tests/.

- At session start, logging of the in-process services (every stack built by
  tests/integration/stack.py) is configured as an entry point would, at
  DEBUG, into ``<basetemp>/in-process-services.log`` (and the captured
  stderr). The ledger's test admin token and the test service token are registered as
  secrets, as the
  ledger's ``main`` registers its own.
- Tests register the values that must never be logged with :func:`sensitive`
  (the prompts they send, keys they hold). Every Rationer key (``rk-`` plus 43
  URL-safe characters) and every unredacted bearer credential counts anyway,
  whichever test created it.
- At session end every ``*.log`` file under the session's temporary
  directory is scanned: that file, and the logs of the service processes the
  tests start (``rationer up``'s ``logs/*.log``, benches' per-process logs).
  A hit fails the session and names the file and line, with the value masked.

``service_log`` gives a test the in-process log text written since it began.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pytest
import structlog

SESSION_LOG = "in-process-services.log"
KEY = re.compile(r"\brk-[A-Za-z0-9_\-]{43}(?![A-Za-z0-9_\-])")
BEARER = re.compile(r"(?i)\bbearer\s+(?!\[REDACTED\]|<)[A-Za-z0-9._~+/=\-]{8,}")
_sensitive: set[str] = set()
_state: dict[str, object] = {}


def sensitive(*values: str) -> None:
    """Values (prompts, secrets) no log line may contain; checked at session end."""
    _sensitive.update(v for v in values if len(v) >= 8)


class _Tee:
    """The log file, plus whatever sys.stderr is now (pytest swaps it per test)."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._file.write(text)
            self._file.flush()
        with contextlib.suppress(ValueError):  # a capture stream already closed
            sys.stderr.write(text)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def isatty(self) -> bool:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    basetemp = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    path = basetemp / SESSION_LOG
    _state["basetemp"], _state["log"] = basetemp, path
    _streams.append(_Tee(path.open("a", encoding="utf-8")))
    _never_cache_loggers()
    _configure()


def _never_cache_loggers() -> None:
    """In-process entry points (CLI commands run through CliRunner) configure
    logging too. With structlog's cache_logger_on_first_use, a module logger
    first used meanwhile would keep that level for the rest of the session,
    whatever is configured later; so under the tests nothing is cached."""
    import rationer.platform.logging as platform_logging

    original = platform_logging.configure_logging

    def uncached(*args: Any, **kwargs: Any) -> None:
        kwargs["cache"] = False
        original(*args, **kwargs)

    platform_logging.configure_logging = uncached  # type: ignore[assignment]


_streams: list[_Tee] = []


def _configure() -> None:
    from rationer.platform.logging import configure_logging
    from testsupport.ledger import ADMIN_TOKEN
    from testsupport.platform import SERVICE_TOKEN

    configure_logging("console", "DEBUG", stream=_streams[0], secrets=[ADMIN_TOKEN, SERVICE_TOKEN],  # type: ignore[arg-type]
                      cache=False)  # fmt: skip
    _state["config"] = (structlog.get_config()["processors"], logging.getLogger().handlers[:])
    # The tests' own HTTP clients log request bodies at DEBUG: that is the
    # client's output, not the gateway's.
    for client in ("openai", "anthropic"):
        logging.getLogger(client).setLevel(logging.INFO)
    sensitive(ADMIN_TOKEN, SERVICE_TOKEN)


@pytest.fixture(autouse=True)
def _services_log_at_debug() -> None:
    """Re-apply the session's logging if a test ran an entry point in-process.

    CLI commands configure logging as entry points do (``rationer eval cache``
    at WARNING, say); without this, every later test's service logs would
    escape the scan.
    """
    root = logging.getLogger()
    ours = _state.get("config")
    now = (structlog.get_config()["processors"], root.handlers[:])
    # A test's own restore may put back processors and handlers but not the level.
    if _streams and (ours is None or now[0] is not ours[0] or now[1] != ours[1] or root.level != logging.DEBUG):
        _configure()


@dataclass(frozen=True)
class Leak:
    path: Path
    line_no: int
    what: str
    line: str


def _mask(line: str, needle: str) -> str:
    return line.replace(needle, f"<{len(needle)} chars>")[:300]


def scan(paths: list[Path], values: set[str]) -> list[Leak]:
    leaks: list[Leak] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for no, line in enumerate(text.splitlines(), 1):
            for pattern, what in ((KEY, "a Rationer API key"), (BEARER, "a bearer credential")):
                for m in pattern.finditer(line):
                    leaks.append(Leak(path, no, what, _mask(line, m.group(0))))
            leaks.extend(Leak(path, no, "a registered value", _mask(line, v)) for v in values if v in line)
    return leaks


def log_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.log") if p.is_file())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    root = _state.get("basetemp")
    if root is None:
        return
    files = log_files(root)
    leaks = scan(files, _sensitive)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"log-secrets check: {len(files)} log file(s) under {root}, {len(leaks)} leak(s)")
        for leak in leaks[:20]:
            reporter.write_line(f"  LEAK {leak.what} at {leak.path}:{leak.line_no}: {leak.line}", red=True)
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


class LogWindow:
    """The in-process service log from a point on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = path.stat().st_size if path.exists() else 0

    def text(self) -> str:
        with self.path.open("rb") as f:
            f.seek(self.start)
            return f.read().decode("utf-8", "replace")


@pytest.fixture
def service_log() -> Iterator[LogWindow]:
    path = _state.get("log")
    if path is None:
        pytest.skip("the log-secrets plugin (tests/logcheck.py) is not active")
    yield LogWindow(path)
