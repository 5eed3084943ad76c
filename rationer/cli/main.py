"""The ``rationer`` command line.

Each service contributes its commands through ``services.<svc>.cli.register``
so this module stays small and ``rationer --help`` stays fast: service modules
import their heavy dependencies (llama.cpp, FAISS, ONNX Runtime) inside the
command bodies, not at import time.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import typer

app = typer.Typer(
    help="Rationer: an enterprise AI gateway that rations LLM tokens.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@dataclass(frozen=True)
class CliGroups:
    """Sub-command groups that services attach their commands to."""

    root: typer.Typer
    serve: typer.Typer
    bench: typer.Typer
    eval: typer.Typer
    train: typer.Typer
    calibrate: typer.Typer
    report: typer.Typer
    keys: typer.Typer
    budgets: typer.Typer
    trace: typer.Typer


def _group(name: str, help_text: str) -> typer.Typer:
    sub = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub


GROUPS = CliGroups(
    root=app,
    serve=_group("serve", "Run one service in the foreground."),
    bench=_group("bench", "Benchmarks; each prints ratios measured in one run (add --json)."),
    eval=_group("eval", "Quality evaluations (add --json)."),
    train=_group("train", "Train learned components."),
    calibrate=_group("calibrate", "Fit operating points on an operator's own traffic."),
    report=_group("report", "Reports: chargeback, replay."),
    keys=_group("keys", "Manage API keys (needs the admin credential)."),
    budgets=_group("budgets", "Manage budgets (needs the admin credential)."),
    trace=_group("trace", "Build and import traffic traces."),
)

SERVICE_CLIS = (
    "services.ledger.cli",
    "services.slm_worker.cli",
    "services.cache.cli",
    "services.router.cli",
    "rationer.classifier.cli",
    "rationer.replay.cli",
)

for _module in SERVICE_CLIS:
    importlib.import_module(_module).register(GROUPS)


if __name__ == "__main__":
    app()
