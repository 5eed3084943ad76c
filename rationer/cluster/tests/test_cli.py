"""``rationer cluster up`` refuses to start, in one line and before spawning anything, without its servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rationer.platform.net import free_port


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--postgres-dsn", "postgresql://postgres@127.0.0.1:{port}/test", "PostgreSQL at postgresql://postgres@127.0.0.1"),
    ("--redis-url", "redis://127.0.0.1:{port}/0", "Redis at redis://127.0.0.1"),
])  # fmt: skip
@pytest.mark.postgres
def test_an_unreachable_server_is_one_line_and_exit_2(tmp_path: Path, flag: str, value: str, says: str) -> None:
    data = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, "-m", "rationer.cli.main", "cluster", "up", "--data-dir", str(data),
         flag, value.format(port=free_port())],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error (UNAVAILABLE): " + says) and "unreachable" in lines[0]
    assert f"start it or pass {flag}" in lines[0]
    assert not (data / "logs").exists(), "nothing was started"


def test_a_dsn_password_is_never_echoed() -> None:
    from rationer.cluster.backing import _server_hint

    assert _server_hint("postgresql://u:s3cret@h:5/db") == "postgresql://u:***@h:5/db"
    assert _server_hint("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert _server_hint("postgresql://u@h:5/db") == "postgresql://u@h:5/db"
