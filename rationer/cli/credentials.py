"""Where the CLI finds credentials when none is passed on the command line.

Order, first hit wins: the command-line option, its environment variable
(``RATIONER_API_KEY`` / ``RATIONER_ADMIN_TOKEN``, read by typer as the
option's ``envvar``), then ``<data dir>/credentials.json`` that ``rationer up``
writes (data dir: ``--data-dir`` before the command, ``RATIONER_DATA_DIR``, or
``.rationer``). Nothing found is UNAUTHENTICATED with what to do, before any
call is made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rationer.errors import Unauthenticated

DEFAULT_DATA_DIR = Path(".rationer")


@dataclass
class CliState:
    """Options given before the command (``rationer --debug chat ...``), set by the root callback.

    Here rather than in ``rationer.cli.main``: run as ``python -m``, that
    module is ``__main__`` and a command importing it would get a second copy.
    """

    debug: bool = False
    data_dir: Path = field(default=DEFAULT_DATA_DIR)


STATE = CliState()


def _stored(data_dir: Path, field: str) -> str:
    path = data_dir / "credentials.json"
    try:
        value = json.loads(path.read_text()).get(field, "")
    except (OSError, ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def api_key(given: str, data_dir: Path | None = None) -> str:
    """The caller's API key: ``given`` or the demo key of ``rationer up``."""
    data_dir = data_dir or STATE.data_dir
    key = given or _stored(data_dir, "demo_api_key")
    if not key:
        raise Unauthenticated(
            f"no API key: pass --api-key, set RATIONER_API_KEY, or start the gateway with `rationer up` "
            f"(it writes {data_dir / 'credentials.json'})"
        )
    return key


def admin_credential(given: str, data_dir: Path | None = None) -> str:
    """The admin credential: ``given``, else the admin API key of ``rationer up``."""
    data_dir = data_dir or STATE.data_dir
    token = given or _stored(data_dir, "admin_api_key") or _stored(data_dir, "admin_token")
    if not token:
        raise Unauthenticated(
            f"no admin credential: pass --admin-token, set RATIONER_ADMIN_TOKEN, or run where "
            f"{data_dir / 'credentials.json'} exists (written by `rationer up`; see --data-dir)"
        )
    return token
