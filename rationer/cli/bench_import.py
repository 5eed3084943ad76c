"""Lazy import of the benchmark package for the ``rationer bench ...`` commands.

The benches live in the top-level ``bench/`` package of a source checkout; the
wheel leaves them out (docs/BENCHMARKS.md), so an installed gateway has the
commands but not their code, and says so instead of a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import typer


def bench_module(name: str) -> ModuleType:
    """``importlib.import_module(name)`` for a module under ``bench``, or exit 2 saying how to get it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (exc.name == "bench" or name.startswith(exc.name + ".") or exc.name == name):
            raise  # something the bench itself needs is missing: let it say what
        typer.echo(
            f"error: {name} is not installed: the benches ship only in a source checkout of Rationer "
            "(the bench/ package, left out of the wheel); run this command from a checkout with "
            "`pip install -e .[dev]`",
            err=True,
        )
        raise typer.Exit(2) from None
