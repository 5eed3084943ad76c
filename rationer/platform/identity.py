"""Who is calling, and what the ledger holds for them: one definition for every service.

The ledger authenticates a key into a ``Principal``; the router, the cache and
the CLI read the same value. ``bearer`` is the one parser of
``authorization: Bearer <token>`` for gRPC metadata and HTTP headers alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from rationer.errors import Unauthenticated


@dataclass(frozen=True)
class Principal:
    org_id: str
    team_id: str
    user_id: str
    key_id: str
    tenant: str
    allowed_tiers: tuple[str, ...] = ()
    project: str = ""  # the project the key is bound to ("" = unbound)
    service_account: str = ""
    is_admin: bool = False
    expires_at_us: int | None = None
    log_prompts: bool = False  # the org stores prompt text with usage events (ledger orgs.log_prompts)


@dataclass(frozen=True)
class Reservation:
    """A hold the ledger placed before a model call."""

    reservation_id: str
    held_nano_usd: int
    min_remaining_fraction: float = 1.0
    replayed: bool = False  # the ledger returned an earlier call's reservation


def bearer(raw: str | None, *, where: str = "'authorization' metadata", header: str = "authorization") -> str:
    """The token of ``Bearer <token>``; UNAUTHENTICATED naming what to send otherwise.

    ``where`` names the carrier in the message ("Authorization header" over
    HTTP) and ``header`` the line to send, so a person knows what to fix.
    """
    if raw is None:
        raise Unauthenticated(f"missing {where}; send '{header}: Bearer <rationer key>'")
    scheme, _, token = raw.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(f"malformed {where}; expected 'Bearer <rationer key>'")
    return token
