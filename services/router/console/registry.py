"""How a page joins the console: a module in ``console/pages`` defining ``PAGE``.

    # services/router/console/pages/budgets.py
    PAGE = Page(slug="budgets", title="Budgets", order=30,
                routes=(Route("GET", "budgets", list_budgets),
                        Route("POST", "budgets", set_budget)))

    async def list_budgets(ctx: Ctx) -> dict[str, object]: ...

Each route is served at ``/console/api/<path>``; the page's script is
``static/pages/<slug>.js``. :func:`discover` imports every module of the
package, so adding a page edits no shared list (docs/console.md, "Adding a page").
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from services.router.console.context import Ctx

# What a handler returns: JSON-able data (sent as JSON) or a response of its own (CSV, ...).
ApiHandler = Callable[[Ctx], Awaitable[object]]
SLUG = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # under /console/api/, aiohttp syntax: "budgets/{budget_id}"
    handler: ApiHandler


@dataclass(frozen=True)
class Page:
    slug: str  # the URL (/console/<slug>) and the script (static/pages/<slug>.js)
    title: str
    order: int = 100  # position in the nav
    routes: tuple[Route, ...] = ()
    # Roles the nav shows the page to (None: everyone). A hint only: the ledger enforces.
    roles: frozenset[str] | None = None
    # Query parameters that make a good screenshot beyond the period (e.g. {"by": "team"}).
    shot_params: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not SLUG.match(self.slug) or self.slug in ("api", "static", "login", "logout"):
            raise ValueError(f"console page slug {self.slug!r} must be [a-z][a-z0-9-]* and not a reserved path")
        for r in self.routes:
            if r.method not in METHODS or r.path.startswith("/"):
                raise ValueError(f"page {self.slug}: route {r.method} {r.path!r} needs a method in "
                                 f"{sorted(METHODS)} and a path relative to /console/api/")  # fmt: skip


def discover(package: str = "services.router.console.pages") -> list[Page]:
    """Every ``PAGE`` in the package's modules, by ``order`` then slug; duplicate slugs or routes fail."""
    pkg = importlib.import_module(package)
    pages: list[Page] = []
    for info in pkgutil.iter_modules(pkg.__path__):
        page = getattr(importlib.import_module(f"{package}.{info.name}"), "PAGE", None)
        if isinstance(page, Page):
            pages.append(page)
    pages.sort(key=lambda p: (p.order, p.slug))
    seen: dict[str, str] = {}
    for p in pages:
        for key in [f"page {p.slug}", *(f"{r.method} {r.path}" for r in p.routes)]:
            if key in seen:
                raise ValueError(f"console: {key} is declared by both {seen[key]} and {p.slug}")
            seen[key] = p.slug
    return pages


def json_response(data: object) -> web.StreamResponse:
    return data if isinstance(data, web.StreamResponse) else web.json_response(data)
