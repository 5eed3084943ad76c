"""Async bodies of `rationer limits set`, `prices set` and `events list` (imported lazily)."""

from __future__ import annotations

import json

from rationer.api.ledger.v1 import ledger_pb2 as pb
from rationer.errors import InvalidArgument
from rationer.platform.money import usd_text, usd_to_nano
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.cli_ops import need_token, parse_scope
from services.ledger.money import to_datetime
from services.ledger.report import period_range

# The ledger's price ceiling per million tokens, in USD (10**11 nano-USD).
MAX_PRICE_USD = 100


async def set_limit(ledger: str, token: str, scope: str, rpm: int, tpm: int) -> str:
    kind, scope_id = parse_scope(scope)
    if kind not in ("key", "team"):
        raise InvalidArgument(f"rate limits apply to a key or a team (key:k_... or team:acme/eng), got {scope!r}")
    if rpm < 0 or tpm < 0:
        raise InvalidArgument("--rpm and --tpm must be 0 (no limit) or more")
    async with LedgerAdminClient(ledger, need_token(token)) as c:
        r = await c.set_rate_limit(kind, scope_id, rpm=rpm, tpm=tpm)
    return (f"rate limit {kind}:{scope_id}  requests/min={r.requests_per_minute or 'unlimited'}  "
            f"tokens/min={r.tokens_per_minute or 'unlimited'}")  # fmt: skip


def _price_nano(flag: str, usd: float) -> int:
    if not 0 <= usd <= MAX_PRICE_USD:
        raise InvalidArgument(f"{flag} is USD per million tokens, between 0 and {MAX_PRICE_USD}; got {usd:g}")
    return usd_to_nano(usd)


async def set_price(ledger: str, token: str, tier: str, model: str, inp_usd: float, out_usd: float,
                    reference: bool) -> str:  # fmt: skip
    inp, out = _price_nano("--input", inp_usd), _price_nano("--output", out_usd)
    async with LedgerAdminClient(ledger, need_token(token)) as c:
        p = await c.set_price(tier, model, inp, out, is_reference=reference)
    ref = "  (reference for savings)" if p.is_reference else ""
    return (f"price {p.tier} v{p.version}: {p.model}  input {usd_text(p.input_per_million.nano_usd)}/M  "
            f"output {usd_text(p.output_per_million.nano_usd)}/M{ref}")  # fmt: skip


def _event_line(e: pb.UsageEvent) -> str:
    when = to_datetime(e.time.seconds * 1_000_000 + e.time.nanos // 1000).strftime("%Y-%m-%d %H:%M:%S")
    who = e.user_id or f"{e.team_id} (service account)"
    detail = f"  {e.detail}" if e.detail else ""
    return (f"{when}  {e.kind:10}  {e.key_id}  {who}  tier={e.tier or '-'}  "
            f"tokens={e.prompt_tokens}+{e.completion_tokens}  cost={usd_text(e.cost.nano_usd)}{detail}")  # fmt: skip


def _event_json(e: pb.UsageEvent) -> dict[str, object]:
    return {"time_us": e.time.seconds * 1_000_000 + e.time.nanos // 1000, "kind": e.kind, "key_id": e.key_id,
            "org_id": e.org_id, "team_id": e.team_id, "user_id": e.user_id, "project": e.project, "tier": e.tier,
            "model": e.model, "request_id": e.request_id, "prompt_tokens": e.prompt_tokens,
            "completion_tokens": e.completion_tokens, "cost_nano_usd": e.cost.nano_usd, "detail": e.detail}  # fmt: skip


async def list_events(ledger: str, token: str, kind: str, period: str, limit: int, as_json: bool) -> str:
    if not 1 <= limit <= 10_000:
        raise InvalidArgument(f"--limit must be between 1 and 10,000, got {limit:,}")
    start, end = period_range(period) if period else (None, None)
    async with LedgerAdminClient(ledger, need_token(token)) as c:
        events = await c.list_events(kind=kind, limit=limit, start_us=start, end_us=end)
    if as_json:
        return json.dumps([_event_json(e) for e in events])
    return "\n".join(_event_line(e) for e in events) or "(no events)"
