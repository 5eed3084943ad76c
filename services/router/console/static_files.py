"""The console's assets, read once from the package (they ship in the wheel as package data)."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}  # fmt: skip


def _walk(node: Traversable, prefix: str, out: dict[str, tuple[bytes, str]]) -> None:
    for child in node.iterdir():
        name = f"{prefix}{child.name}"
        if child.is_dir():
            _walk(child, f"{name}/", out)
            continue
        kind = TYPES.get(name[name.rfind("."):] if "." in name else "")
        if kind is not None:
            out[name] = (child.read_bytes(), kind)


def load(package: str = "services.router.console") -> dict[str, tuple[bytes, str]]:
    """``relative path -> (bytes, content type)``; a request can name only these, so no path escapes."""
    out: dict[str, tuple[bytes, str]] = {}
    _walk(resources.files(package) / "static", "", out)
    return out
