"""Files that hold a secret: created private, never readable by group or others.

One helper for every secret the gateway keeps on disk (the ledger admin
token, generated credentials, frontier API keys, service tokens): files are
created with mode 0600 in the ``open`` call itself, never written first and
``chmod``-ed after, so there is no moment when another user could read them.
Writes go to a private temporary file that is renamed over the target, so a
reader never sees half a file either. Directories that hold them are 0700.

Configuration files reference a secret by path (``admin_token_file``,
``api_key_file``) rather than containing it; :func:`read_secret` is how a
service's settings load such a reference.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO

from rationer.errors import InvalidArgument

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700; tighten it if it exists looser."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(DIR_MODE)
    return path


def write_private(path: Path, data: str | bytes) -> Path:
    """Atomically replace ``path`` with ``data``, mode 0600 from the first byte."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path


def open_private_append(path: Path) -> BinaryIO:
    """Open a log file for appending; created 0600 (an existing one is tightened)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "ab")


def read_secret(path: Path, what: str = "secret") -> str:
    """The stripped contents of a secret file, or a message saying what to fix."""
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise InvalidArgument(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{what} file {path} cannot be read: {exc}") from None
    if not value:
        raise InvalidArgument(f"{what} file {path} is empty")
    return value


def ensure_secret(path: Path, *, nbytes: int = 32) -> str:
    """The secret stored at ``path``, generated (URL-safe random) on first use.

    A file left readable by an older version is tightened to 0600.
    """
    if path.exists():
        tighten(path)
        return read_secret(path)
    value = secrets.token_urlsafe(nbytes)
    write_private(path, value)
    return value


def tighten(path: Path) -> None:
    """Make an existing secret file 0600 (one written before this rule, or by hand)."""
    if not is_private(path):
        path.chmod(FILE_MODE)


def is_private(path: Path) -> bool:
    """True when neither group nor others may read or write ``path``."""
    return not stat.S_IMODE(path.stat().st_mode) & 0o077
