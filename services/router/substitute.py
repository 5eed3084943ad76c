"""Whether a named tier may be replaced, and client-facing text without internal addresses.

A request that names a tier or model (``"model": "frontier"``) asked for
that model: serving it from another tier, even a healthy one, silently
changes what the caller pays for and gets. Only keys the operator lists in
``[router] fallback_for`` accept that, and their responses name the tiers
that were skipped (``x-rationer-fallbacks``, ``RouteInfo.fallbacks``).
Everyone else gets UNAVAILABLE (503) naming the tier.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from services.router.types import Principal

# IPv4 (with an optional port), bracketed IPv6 and localhost:port: the gateway's
# own topology (workers, the ledger, a frontier URL), never the caller's business.
_ADDRESS = re.compile(r"(?:\b(?:\d{1,3}\.){3}\d{1,3}|\[[0-9A-Fa-f:.]+\]|\blocalhost)(?::\d{1,5})?\b")
_WORKER = re.compile(r"\bworker <internal>")


def may_substitute(principal: Principal, fallback_for: Sequence[str]) -> bool:
    """Whether this key's policy lets another tier serve a request that named one."""
    if "*" in fallback_for:
        return True
    mine = {f"key:{principal.key_id}", f"team:{principal.team_id}", f"org:{principal.org_id}"}
    return not mine.isdisjoint(fallback_for)


def hide_addresses(text: str) -> str:
    """``text`` with every host:port replaced, for messages a client reads (logs keep the address)."""
    return _WORKER.sub("a local worker", _ADDRESS.sub("<internal>", text))
