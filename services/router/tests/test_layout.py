"""The router's shape, checked: doors use only the core's façade, and the modules import without cycles."""

from __future__ import annotations

import ast
from pathlib import Path

ROUTER = Path(__file__).resolve().parents[1]
DOORS = [ROUTER / "servicer.py", *sorted((ROUTER / "http").glob("*.py"))]
# What a door may call on RouterCore (besides its clock).
FACADE = {"complete", "stream", "principal", "models_for", "ready", "unready", "embed", "report_wrong_hit",
          "request_limits", "clock"}  # fmt: skip


def _module(path: Path) -> str:
    parts = path.relative_to(ROUTER.parents[1]).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_doors_use_only_the_facade() -> None:
    used: dict[str, set[str]] = {}
    for path in DOORS:
        for node in ast.walk(ast.parse(path.read_text())):
            # self.core.X, self._core.X, core.X
            if isinstance(node, ast.Attribute):
                owner = node.value
                name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if name in ("core", "_core"):
                    used.setdefault(path.name, set()).add(node.attr)
    assert used, "no door calls the core?"
    assert {door: attrs - FACADE for door, attrs in used.items() if attrs - FACADE} == {}


def test_router_modules_import_without_cycles_or_type_checking_back_doors() -> None:
    paths = [p for p in ROUTER.rglob("*.py") if "tests" not in p.parts]
    modules = {_module(p): p for p in paths}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                assert not any(
                    isinstance(n, ast.ImportFrom) and (n.module or "").startswith("services.router")
                    for n in ast.walk(node)
                ), f"{name} imports router code under TYPE_CHECKING"
            if isinstance(node, ast.ImportFrom) and node.module:
                deps |= {m for m in (node.module, *(f"{node.module}.{a.name}" for a in node.names)) if m in modules}
        graph[name] = deps - {name}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path[path.index(name) :], name))
        if name in done:
            return
        for dep in graph[name]:
            visit(dep, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())
