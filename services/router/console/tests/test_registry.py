"""Pages are found, not listed; a bad page fails at start with what to fix."""

from __future__ import annotations

import pytest

from services.router.console.registry import Page, Route, discover
from services.router.console.static_files import load


async def _noop(ctx: object) -> object:
    return {}


def test_every_page_module_is_discovered_with_its_script() -> None:
    pages = discover()
    slugs = [p.slug for p in pages]
    assert slugs[:2] == ["overview", "chargeback"]
    assets = load()
    for p in pages:
        assert f"pages/{p.slug}.js" in assets, f"page {p.slug} has no static/pages/{p.slug}.js"
    assert {"console.js", "charts.js", "console.css"} <= set(assets)
    assert assets["console.js"][1].startswith("text/javascript")


@pytest.mark.parametrize("slug", ["Overview", "api", "login", "static", "a b", ""])
def test_bad_or_reserved_slugs_are_refused(slug: str) -> None:
    with pytest.raises(ValueError, match="slug"):
        Page(slug=slug, title="x")


def test_routes_are_relative_with_a_known_method() -> None:
    with pytest.raises(ValueError, match="relative"):
        Page(slug="x", title="x", routes=(Route("GET", "/console/api/x", _noop),))
    with pytest.raises(ValueError):
        Page(slug="x", title="x", routes=(Route("FETCH", "x", _noop),))


def test_no_page_script_writes_html() -> None:
    # The escaping rule of docs/console.md, checked on every shipped script.
    for name, (body, _) in load().items():
        if name.endswith(".js"):
            text = body.decode()
            for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
                assert banned not in text, f"{name} uses {banned}"
