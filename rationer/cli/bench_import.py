"""Lazy import of the benchmark package for the ``rationer bench ...`` commands.

The benches live in the top-level ``bench/`` package of a source checkout; the
wheel leaves them out, so an installed gateway has the commands but not their
code, and says so instead of a traceback. In a checkout (an editable install
maps only ``rationer`` and ``services``) the folder next to ``rationer/`` is
put on the path first.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import typer

CHECKOUT = Path(__file__).resolve().parents[2]


def _missing(exc: ModuleNotFoundError, name: str) -> bool:
    """True when ``exc`` is about the bench package itself, not something a bench imports."""
    return exc.name is not None and (exc.name == name or name.startswith(exc.name + "."))


def bench_module(name: str) -> ModuleType:
    """``importlib.import_module(name)`` for a module under ``bench``, or exit 2 saying how to get it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if not _missing(exc, name):
            raise
    if (CHECKOUT / "bench" / "__init__.py").is_file() and str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
        return importlib.import_module(name)
    typer.echo(
        f"error: {name} is not installed: the benches ship only in a source checkout of Rationer "
        "(its bench/ and testsupport/ packages are left out of the wheel); run this command from a "
        "checkout installed with `pip install -e .[dev]`",
        err=True,
    )
    raise typer.Exit(2)
