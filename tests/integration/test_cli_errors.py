"""The CLI explains itself: default credentials, one-line errors, busy ports.

Every case runs the real entry point (``python -m rationer.cli.main``) in a
subprocess, as an operator would after ``./scripts/up``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from testsupport.ledger import ADMIN_TOKEN, running_ledger, settings_for

ENV_DROP = ("RATIONER_API_KEY", "RATIONER_ADMIN_TOKEN", "RATIONER_DATA_DIR", "RATIONER_DEBUG",
            "RATIONER_LEDGER_ADDRESS", "RATIONER_ADDRESS")  # fmt: skip


def rationer(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
    base["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([sys.executable, "-m", "rationer.cli.main", *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


async def arationer(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Like :func:`rationer` without blocking the loop an in-process ledger serves on."""
    base = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
    base["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rationer.cli.main", *args, cwd=cwd, env={**base, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port some other program is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_chat_without_a_key_says_no_api_key(tmp_path: Path) -> None:
    rc, _, err = rationer("chat", "hi", cwd=tmp_path)
    line = one_line(err)
    assert rc == 2 and line.startswith("error (UNAUTHENTICATED): no API key") and "RATIONER_API_KEY" in line
    assert "malformed" not in line


def test_chat_reads_credentials_json_and_a_router_down_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / ".rationer"
    data.mkdir()
    (data / "credentials.json").write_text(json.dumps({"demo_api_key": "rk_demo_from_file"}))
    address = f"127.0.0.1:{free_port()}"
    rc, _, err = rationer("chat", "--address", address, "hi", cwd=tmp_path)
    line = one_line(err)
    # The key was found (no "no API key"); the failure is the router being down, with the fix.
    assert rc == 2 and line.startswith("error (UNAVAILABLE)") and "./scripts/up" in line
    rc, _, err = rationer("--debug", "chat", "--address", address, "hi", cwd=tmp_path)
    assert rc != 0 and ("Traceback" in err or "╭" in err)


def test_complete_with_a_missing_file_is_one_line(tmp_path: Path) -> None:
    rc, _, err = rationer("complete", "--api-key", "rk_x", "--file", str(tmp_path / "nope.txt"), cwd=tmp_path)
    line = one_line(err)
    assert rc == 2 and "INVALID_ARGUMENT" in line and "nope.txt" in line


def test_admin_commands_without_a_credential_are_unauthenticated(tmp_path: Path) -> None:
    rc, _, err = rationer("keys", "list", "--ledger", f"127.0.0.1:{free_port()}", cwd=tmp_path)
    line = one_line(err)
    assert rc == 2 and line.startswith("error (UNAUTHENTICATED): no admin credential")


async def test_admin_commands_read_the_admin_credential_from_credentials_json(tmp_path: Path) -> None:
    data = tmp_path / "state"
    data.mkdir()
    (data / "credentials.json").write_text(json.dumps({"admin_api_key": ADMIN_TOKEN}))
    async with running_ledger(settings_for("sqlite", tmp_path)) as led:
        args = ("--ledger", led.target)
        rc, out, err = await arationer("--data-dir", str(data), "keys", "create", "--org", "acme", "--team", "eng",
                                "--service-account", "bot", *args, cwd=tmp_path)  # fmt: skip
        assert rc == 0, err
        assert "key_id: k" in out
        rc, out, err = await arationer("keys", "list", *args, cwd=tmp_path, env={"RATIONER_DATA_DIR": str(data)})
        assert rc == 0 and "service account bot" in out, err
        # A wrong credential in the file is the ledger's UNAUTHENTICATED, in one line.
        (data / "credentials.json").write_text(json.dumps({"admin_api_key": "wrong"}))
        rc, _, err = await arationer("--data-dir", str(data), "keys", "list", *args, cwd=tmp_path)
        assert rc == 2 and one_line(err).startswith("error (UNAUTHENTICATED)")


def test_serve_on_a_busy_port_names_the_port(tmp_path: Path, held_port: int) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[ledger]\nlisten = "127.0.0.1:{held_port}"\nsqlite_path = "{tmp_path / "l.sqlite3"}"\n'
                      f'admin_token = "{ADMIN_TOKEN}"\n')  # fmt: skip
    rc, _, err = rationer("serve", "ledger", "--config", str(config), cwd=tmp_path,
                          env={"RATIONER_SERVICE_TOKEN": "test-service-token-0123456789abcdef"})
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert rc == 2 and f"port {held_port} in use" in last and "--base-port" in last, err
    assert "Traceback" not in err and "GRPC_VERBOSITY" not in err


@pytest.mark.parametrize("offset", [0, 1, 3])
def test_second_up_on_busy_ports_says_port_in_use(tmp_path: Path, held_port: int, offset: int) -> None:
    base = held_port - offset
    rc, _, err = rationer("up", "--data-dir", str(tmp_path / "d"), "--base-port", str(base),
                          "--http-port", str(free_port()), cwd=tmp_path)  # fmt: skip
    line = one_line(err)
    assert rc == 2 and f"port {held_port} in use" in line and f"--base-port {base + 100}" in line
    assert not (tmp_path / "d" / "credentials.json").exists()  # nothing was started


def test_up_with_a_busy_http_port_suggests_http_port(tmp_path: Path, held_port: int) -> None:
    rc, _, err = rationer("up", "--data-dir", str(tmp_path / "d"), "--base-port", str(free_port()),
                          "--http-port", str(held_port), cwd=tmp_path)  # fmt: skip
    line = one_line(err)
    assert rc == 2 and f"port {held_port} in use" in line and "--http-port" in line
