"""The FinOps console at ``/console`` on the router's HTTP door (docs/console.md).

A sub-application of the door: sign-in with an API key (a sealed,
stateless session cookie any replica can open), CSRF on every change, a
page shell, static assets shipped in the wheel, and a JSON API per page that
calls the ledger *as the signed-in key*, so the ledger's roles apply.
Pages are modules of :mod:`services.router.console.pages`, found at start.
"""
