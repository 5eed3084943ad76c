"""``rationer up`` leaves no secret readable by another user (issue 12, item 8).

Only the ledger is started (no models): it is what the generated config's
admin token is for, and it creates the demo credentials and the SQLite files.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from rationer.platform.net import free_port, free_port_block
from rationer.platform.secrets import is_private
from rationer.platform.settings import load_settings
from rationer.up import Supervisor, UpOptions, admin_token, wait_serving
from services.ledger.settings import LedgerSettings
from services.router.settings import RouterSettings

FRONTIER_KEY = "sk-test-frontier-0123456789abcdef"


def options(data: Path) -> UpOptions:
    return UpOptions(data_dir=data, base_port=free_port_block(4), http_port=free_port(),
                     frontier_url="http://127.0.0.1:9/v1", frontier_key=FRONTIER_KEY,
                     base_env=dict(os.environ))  # fmt: skip


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


async def test_every_file_rationer_up_and_the_ledger_write_is_private(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # a usual login umask: files would be 0644 by default
    try:
        data = tmp_path / "up"
        sup = Supervisor(options(data))  # writes gateway.toml and the secrets it references
        ledger = next(c for c in sup.children if c.name == "ledger")
        ledger.start()
        try:
            await wait_serving(ledger.address, 60, ledger)
            creds = await sup.credentials()
        finally:
            ledger.stop()
    finally:
        os.umask(previous)
    secrets = [creds["admin_token"], creds["admin_api_key"], creds["demo_api_key"], FRONTIER_KEY]
    entries = [data, *data.rglob("*")]
    holding = [p for p in entries if p.is_file() and any(s.encode() in p.read_bytes() for s in secrets)]
    assert {p.name for p in holding} >= {"admin_token", "credentials.json", "frontier_api_key"}
    # Not only the secret files: the SQLite files and logs the ledger process
    # created are private too (it runs with umask 077), and so are the folders.
    assert {p.name for p in entries} >= {"ledger.sqlite3", "ledger.log", "gateway.toml", "logs"}
    assert {str(p.relative_to(tmp_path)): mode(p) for p in entries if not is_private(p)} == {}
    # The config references the secrets by file; the services read them from there.
    config = data / "gateway.toml"
    assert not any(s in config.read_text() for s in secrets)
    assert load_settings(LedgerSettings, "ledger", toml_path=config).admin_token == creds["admin_token"]
    tiers = load_settings(RouterSettings, "router", toml_path=config).tiers
    assert [t.api_key for t in tiers if t.name == "frontier"] == [FRONTIER_KEY]


async def test_secret_files_left_readable_by_an_older_version_are_tightened(tmp_path: Path) -> None:
    data = tmp_path / "old"
    data.mkdir(mode=0o755)
    for name, text in (("admin_token", "old-admin-token-123456"), ("credentials.json", '{"demo_api_key": "x"}')):
        (data / name).write_text(text)
        (data / name).chmod(0o644)
    sup = Supervisor(options(data))
    assert admin_token(data) == "old-admin-token-123456"  # kept, not rotated
    creds = await sup.credentials()
    # Kept as they were; a data dir from before the service token gains one.
    assert creds["demo_api_key"] == "x" and set(creds) == {"demo_api_key", "service_token"}
    assert creds["service_token"] == (data / "service_token").read_text().strip()
    assert [p.name for p in [data, *data.rglob("*")] if not is_private(p)] == []
