"""Benchmarks of every service, run by ``rationer bench ...`` from a source checkout.

Not shipped: the wheel leaves this package out (pyproject.toml), and the CLI
says so when it is missing (``rationer.cli.bench_import``).
"""
