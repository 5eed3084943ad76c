"""The README's quick start runs as written (issue 18): ``rationer up`` with its
embedded defaults, then the shell commands and the OpenAI example from "The two
commands", from the directory ``up`` ran in (so the default credentials apply).

``./scripts/up`` is ``./scripts/setup`` followed by ``rationer up``; the test
command has just run the set-up, so the test starts ``./scripts/rationer up``
itself rather than install a second virtualenv. It runs on free ports, which
reach the README's commands the way an operator on other ports would: through
``RATIONER_ADDRESS`` and ``RATIONER_LEDGER_ADDRESS``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rationer.platform.net import free_port, free_port_block
from testsupport.processes import stop_processes

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
WRAPPER = ROOT / "scripts" / "rationer"


def quick_start() -> tuple[list[list[str]], str]:
    """The shell commands after ``./scripts/up`` and the OpenAI Python example."""
    section = README.read_text().split("## The two commands", 1)[1].split("\n## ", 1)[0]
    bash = re.findall(r"```bash\n(.*?)```", section, re.S)
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    commands = [shlex.split(line, comments=True) for line in bash[1].splitlines()]
    openai_example = next(p for p in python if "from openai import OpenAI" in p)
    return [c for c in commands if c], openai_example


def test_the_quick_start_has_chat_chargeback_and_the_openai_example() -> None:
    commands, example = quick_start()
    assert [c[:2] for c in commands] == [["./scripts/rationer", "chat"], ["./scripts/rationer", "report"]]
    assert "http://127.0.0.1:8080/v1" in example and "<rationer key>" in example


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[Path, int, dict[str, str]]]:
    http_port, base = free_port(), free_port_block(4)
    args = [str(WRAPPER), "up", "--base-port", str(base), "--http-port", str(http_port)]
    env = {**os.environ, "RATIONER_ADDRESS": f"127.0.0.1:{base}", "RATIONER_LEDGER_ADDRESS": f"127.0.0.1:{base + 1}"}
    log = (tmp_path / "up.out").open("wb")
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "up.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "rationer up did not get ready in 180 s"
            # The banner is what tells a person to go ahead; it comes once the keys are written.
            if "Rationer is up." in (tmp_path / "up.out").read_text():
                break
            time.sleep(0.5)
        assert httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=5).status_code == 200
        yield tmp_path, http_port, env
    finally:
        stop_processes([proc])
        log.close()


def test_the_quick_start_works_as_written(gateway: tuple[Path, int, dict[str, str]]) -> None:
    cwd, http_port, env = gateway
    commands, example = quick_start()
    outputs = []
    for words in commands:
        done = subprocess.run([str(WRAPPER), *words[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=180)  # fmt: skip
        assert done.returncode == 0, f"{shlex.join(words)}: {done.stderr}"
        outputs.append((done.stdout, done.stderr))
    (answer, route), (chargeback, _) = outputs
    assert answer.strip() and "tier=" in route and "cost=" in route, route  # an answer, and where it went
    assert "total" in chargeback.lower(), chargeback  # the month's table, with the chat in it
    key = json.loads((cwd / ".rationer" / "credentials.json").read_text())["demo_api_key"]
    code = example.replace("http://127.0.0.1:8080/v1", f"http://127.0.0.1:{http_port}/v1")
    code = code.replace("<rationer key>", key)
    ran = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0 and ran.stdout.strip(), ran.stderr
    # The console the banner names: sign in with the admin key, see this month's traffic in it.
    url = re.search(r"console\s+: (http://\S+/console)", (cwd / "up.out").read_text())
    assert url is not None and url.group(1) == f"http://127.0.0.1:{http_port}/console"
    admin = json.loads((cwd / ".rationer" / "credentials.json").read_text())["admin_api_key"]
    with httpx.Client(base_url=url.group(1), timeout=30) as console:
        r = console.post("/login", data={"api_key": admin, "next": "/console/overview"})
        assert r.status_code == 303 and r.headers["location"] == "/console/overview", r.text
        assert console.get("/overview").status_code == 200  # the page shell, signed in
        overview = console.get("/api/overview").json()
        assert overview["total"]["requests"] >= 1, overview  # the chat above, at least
