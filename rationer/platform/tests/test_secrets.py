"""Secret files are private from their first byte (rationer/platform/secrets.py)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rationer.errors import InvalidArgument
from rationer.platform.secrets import (
    ensure_secret,
    is_private,
    open_private_append,
    private_dir,
    read_secret,
    write_private,
)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 0: anything not created private explicitly would come out 0666/0777."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_written_files_and_dirs_are_private_whatever_the_umask(tmp_path: Path) -> None:
    folder = private_dir(tmp_path / "a" / "b")
    path = write_private(folder / "token", "s3cret")
    assert mode(folder) == 0o700 and mode(path) == 0o600 and path.read_text() == "s3cret"
    with open_private_append(folder / "service.log") as log:
        log.write(b"line\n")
    assert mode(folder / "service.log") == 0o600


@pytest.mark.usefixtures("open_umask")
def test_replacing_a_file_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, b"new")
    assert path.read_bytes() == b"new" and mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["credentials.json"]


def test_loose_files_and_dirs_are_tightened(tmp_path: Path) -> None:
    loose = tmp_path / "data"
    loose.mkdir()
    loose.chmod(0o755)
    (loose / "admin_token").write_text("existing-token\n")
    (loose / "admin_token").chmod(0o644)
    (loose / "router.log").write_text("x")
    (loose / "router.log").chmod(0o644)
    private_dir(loose)
    assert ensure_secret(loose / "admin_token") == "existing-token"
    open_private_append(loose / "router.log").close()
    assert all(is_private(p) for p in (loose, loose / "admin_token", loose / "router.log"))


def test_ensure_secret_generates_once(tmp_path: Path) -> None:
    first = ensure_secret(tmp_path / "token")
    assert len(first) >= 40 and ensure_secret(tmp_path / "token") == first
    assert is_private(tmp_path / "token")


@pytest.mark.parametrize(("content", "needle"), [(None, "does not exist"), ("  \n", "is empty")])
def test_read_secret_says_what_is_wrong(tmp_path: Path, content: str | None, needle: str) -> None:
    path = tmp_path / "admin_token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidArgument, match=needle):
        read_secret(path, "ledger admin_token_file")
