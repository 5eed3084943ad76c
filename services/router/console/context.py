"""What a page's API handler gets: the request, the session, the ledger as the signed-in key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rationer.errors import InvalidArgument
from rationer.platform.clock import Clock
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.client import LedgerClient
from services.router.console import params
from services.router.console.session import Session
from services.router.http.input import parse_json, read_body
from services.router.settings import ConsoleSettings


@dataclass
class Ctx:
    request: web.Request
    session: Session
    ledger: LedgerClient  # Usage, WhoAmI, ListPrices as the signed-in key
    settings: ConsoleSettings
    clock: Clock
    body_timeout_s: float = 30.0

    def admin(self) -> LedgerAdminClient:
        """The admin service as the signed-in key, on the shared channel (nothing to close)."""
        return LedgerAdminClient(self.ledger.channel, self.session.key)

    @property
    def query(self) -> dict[str, str]:
        return dict(self.request.query)

    def period(self) -> params.Period:
        """``from``/``to`` from the query (this month by default), within max_range_days."""
        return params.period(self.query, self.clock.now(), self.settings.max_range_days)

    async def json(self) -> dict[str, Any]:
        """The request's JSON object body (400 for anything else)."""
        body = parse_json(await read_body(self.request, self.body_timeout_s))
        if not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object")
        return body
