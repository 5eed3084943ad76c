"""Repository-wide pytest options (loaded for every test path).

``--long-minutes N`` turns the generated suites (money properties, fuzzing)
from their fast deterministic core into runs of about N minutes each with
fresh randomness; ``./scripts/check-long`` is the documented way to run them.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long-minutes", type=float, default=0.0,
        help="run each generated suite for about this many minutes instead of its fast core",
    )  # fmt: skip


# The shared cache backend's server (testsupport/pgvector.py), for any test path.
from testsupport.pgvector import pgvector  # noqa: E402,F401
