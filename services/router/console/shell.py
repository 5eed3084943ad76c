"""The two HTML documents the console serves: the page shell and the sign-in page.

Only server-known values go in (titles, slugs, the CSRF token, a checked
``next`` path), each through :func:`html.escape`; every piece of ledger data
is put in the DOM later by the page scripts with ``textContent``. No inline
script or style: the Content-Security-Policy forbids both.
"""

from __future__ import annotations

from html import escape

from services.router.console.registry import Page

STATIC = "/console/static"

LOGIN_ERRORS = {
    "bad_key": "That API key was not accepted: it is unknown, revoked or expired. Check it, or ask an admin "
               "for a key (`rationer keys create --role finops`).",
    "expired": "Your session ended (it expired, or the key was revoked). Sign in again.",
    "signed_out": "You are signed out.",
    "refused": "The sign-in came from another site and was refused. Open the console page itself.",
}  # fmt: skip


def _head(title: str, extra: str = "") -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)} · Rationer console</title>'
            f'<link rel="icon" href="{STATIC}/favicon.svg" type="image/svg+xml">'
            f'<link rel="stylesheet" href="{STATIC}/console.css">{extra}</head>')  # fmt: skip


def shell(page: Page, pages: list[Page], csrf_token: str, role: str) -> str:
    """The frame of every page; ``static/console.js`` fills ``#main`` by calling the page's script."""
    nav = "".join(
        f'<a href="/console/{escape(p.slug)}" data-slug="{escape(p.slug)}"'
        f'{" aria-current=page" if p.slug == page.slug else ""}>{escape(p.title)}</a>'
        for p in pages if p.roles is None or role in p.roles
    )  # fmt: skip
    scripts = "".join(f'<script src="{STATIC}/{name}"></script>' for name in
                      ("console.js", "charts.js", *(f"pages/{p.slug}.js" for p in pages)))  # fmt: skip
    meta = f'<meta name="csrf-token" content="{escape(csrf_token)}">'
    return (
        f"{_head(page.title, meta)}"
        f'<body data-page="{escape(page.slug)}">'
        f'<header class="top"><span class="brand">Rationer</span><nav>{nav}</nav>'
        '<span class="who" id="who"></span>'
        f'<form method="post" action="/console/logout" class="logout">'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf_token)}">'
        '<button type="submit">Sign out</button></form></header>'
        '<section class="bar"><form id="period" class="period">'
        '<label>From <input type="date" name="from" required></label>'
        '<label>To <input type="date" name="to" required></label>'
        '<button type="submit">Show</button><button type="button" id="this-month">This month</button>'
        '</form><span id="period-label" class="muted"></span></section>'
        f'<main id="main" aria-live="polite"><p class="muted">Loading…</p></main>{scripts}</body></html>'
    )


def login(next_path: str, error: str) -> str:
    message = LOGIN_ERRORS.get(error, "")
    note = f'<p class="error" role="alert">{escape(message)}</p>' if message else ""
    return (
        f"{_head('Sign in')}<body class=\"login\"><main class=\"card\"><h1>Rationer console</h1>"
        "<p>Sign in with an API key. A viewer key sees its own team, a member key its org; "
        "finops and admin keys see everything.</p>"
        f"{note}<form method=\"post\" action=\"/console/login\" id=\"login\">"
        f'<input type="hidden" name="next" value="{escape(next_path)}">'
        '<label>API key <input type="password" name="api_key" autocomplete="off" required autofocus></label>'
        '<button type="submit">Sign in</button></form></main></body></html>'
    )
