"""Short-lived cache of API key -> principal.

Revocation bound: a revoked key keeps working for at most ``ttl_s`` seconds
(default 5) on a router that authenticated it recently; failures are never
cached, so a newly created key works at once.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

from rationer.errors import PermissionDenied, Unauthenticated
from services.router.ports import LedgerPort
from services.router.types import Principal


def resolve_project(principal: Principal, requested: str) -> str:
    """The project a request counts against (the ledger enforces the same rule).

    A key bound to a project always uses it: no x-rationer-project means the
    key's, another value is refused rather than silently replaced, so the
    caller learns its tag was not what got billed. An unbound key's header
    is taken as given.
    """
    if not principal.project:
        return requested
    if requested and requested != principal.project:
        raise PermissionDenied(
            f"this API key is bound to project {principal.project!r}; x-rationer-project {requested!r} "
            "is not allowed. Leave the header out (the key's project applies) or use a key of that project",
            reason="project_not_allowed",
        )
    return principal.project


class AuthCache:
    def __init__(self, ledger: LedgerPort, ttl_s: float = 5.0, capacity: int = 10_000) -> None:
        self._ledger = ledger
        self._ttl = ttl_s
        self._capacity = capacity
        # Keyed by a digest so raw secrets do not sit in memory dumps longer than needed.
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    async def principal(self, api_key: str) -> Principal:
        if not api_key:
            raise Unauthenticated(
                "missing API key; send metadata 'authorization: Bearer <rationer key>'"
            )
        digest = hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            self._entries.move_to_end(digest)
            return hit[1]
        principal = await self._ledger.authenticate(api_key)
        self._entries[digest] = (now + self._ttl, principal)
        self._entries.move_to_end(digest)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        return principal

    def clear(self) -> None:
        self._entries.clear()
