"""The README's "Keys, budgets and chargeback" commands run as written against a real ledger."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.integration.test_ledger_cli import rationer
from testsupport.ledger import running_ledger, settings_for

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_admin_commands() -> list[list[str]]:
    text = README.read_text()
    section = text.split("### Keys, budgets and chargeback", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "rationer", line
            commands.append(words[1:])
    return commands


def test_the_readme_block_has_the_admin_commands() -> None:
    verbs = {" ".join(c[:2]) for c in readme_admin_commands()}
    assert {"keys create", "budgets set", "limits set", "prices set", "report chargeback", "events list"} <= verbs


async def test_readme_admin_commands_work_as_written(tmp_path: Path) -> None:
    async with running_ledger(settings_for("sqlite", tmp_path)) as led:
        made: list[str] = []  # ids the commands printed, for a later `wh_...` placeholder
        for args in readme_admin_commands():
            if "wh_..." in args:
                assert made, "the README names a webhook id before any `webhook add` printed one"
                args = [made[-1] if a == "wh_..." else a for a in args]
            rc, out, err = await rationer(led.target, *args)
            assert rc == 0, f"rationer {' '.join(args)}: {err}"
            assert "error" not in err.lower(), err
            made += re.findall(r"\bwh_[0-9a-z]+", out)
