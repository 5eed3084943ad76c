"""CLI commands of this service (filled in by its issue)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rationer.cli.main import CliGroups


def register(groups: CliGroups) -> None:
    """Attach this service's commands to the ``rationer`` CLI groups."""
