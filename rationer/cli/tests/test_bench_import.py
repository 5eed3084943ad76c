"""``rationer bench ...`` imports the benches lazily and says so when they are not installed."""

from __future__ import annotations

import pytest
import typer

from rationer.cli import bench_import


def test_a_bench_module_of_the_checkout_is_imported() -> None:
    assert bench_import.bench_module("bench.ledger").__name__ == "bench.ledger"


def test_a_missing_bench_exits_2_saying_where_the_benches_are(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as done:
        bench_import.bench_module("bench.no_such_bench")
    assert done.value.exit_code == 2
    assert "bench.no_such_bench is not installed" in capsys.readouterr().err


def test_what_a_bench_itself_lacks_is_not_hidden() -> None:
    exc = ModuleNotFoundError("No module named 'nonexistent_dep'", name="nonexistent_dep")
    assert not bench_import._missing(exc, "bench.cache")
    assert bench_import._missing(ModuleNotFoundError(name="bench"), "bench.cache")
