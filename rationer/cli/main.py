"""The ``rationer`` command line.

Each service contributes its commands through ``services.<svc>.cli.register``
so this module stays small and ``rationer --help`` stays fast: service modules
import their heavy dependencies (llama.cpp, FAISS, ONNX Runtime) inside the
command bodies, not at import time.

Every failure is one line on stderr, ``error (CODE): message`` plus what to
do, and exit status 2 (a domain error) or 1 (anything else); ``--debug``
before the command shows the traceback instead.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from rationer.cli.credentials import DEFAULT_DATA_DIR, STATE

app = typer.Typer(
    help="Rationer: an enterprise AI gateway that rations LLM tokens.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", envvar="RATIONER_DEBUG", help="Show tracebacks on errors."),
    data_dir: Path = typer.Option(DEFAULT_DATA_DIR, "--data-dir", envvar="RATIONER_DATA_DIR",
                                  help="Where `rationer up` keeps credentials.json (default credentials)."),
) -> None:  # fmt: skip
    STATE.debug, STATE.data_dir = debug, data_dir


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
    limits: typer.Typer
    prices: typer.Typer
    events: typer.Typer


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
    limits=_group("limits", "Rate limits per scope (needs the admin credential)."),
    prices=_group("prices", "Tier prices (needs the admin credential)."),
    events=_group("events", "The ledger's usage events: charges, denials, soft alerts (admin)."),
)

SERVICE_CLIS = (
    "services.ledger.cli",
    "services.slm_worker.cli",
    "services.cache.cli",
    "services.router.cli",
    "rationer.classifier.cli",
    "rationer.replay.cli",
    "rationer.cli.bench_peer",
    "rationer.cli.bench_up",
    "rationer.cluster.cli",
)

for _module in SERVICE_CLIS:
    importlib.import_module(_module).register(GROUPS)

# What to do next, by status, when the message itself does not say.
HINTS = {
    "UNAVAILABLE": "is the gateway running? start it with ./scripts/up (or `rationer up`)",
    "UNAUTHENTICATED": "check the key: --api-key / RATIONER_API_KEY, or --admin-token / RATIONER_ADMIN_TOKEN",
    "DEADLINE_EXCEEDED": "the service is slow or stuck; see its log under .rationer/logs/",
}


def error_line(exc: BaseException) -> tuple[str, int]:
    """One line for a failure, and the exit status."""
    from rationer.errors import RationerError

    if isinstance(exc, RationerError):
        hint = HINTS.get(exc.code, "")
        says_fix = "--" in exc.message or "rationer " in exc.message
        return f"error ({exc.code}): {exc.message}" + (f"; {hint}" if hint and not says_fix else ""), 2
    return f"error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1


def run() -> None:
    """The console entry point: the app, with one-line errors unless --debug."""
    try:
        app()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        if STATE.debug:
            raise
        line, status = error_line(exc)
        print(line, file=sys.stderr)
        sys.exit(status)


if __name__ == "__main__":
    run()
