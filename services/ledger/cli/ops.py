"""Async bodies of the ledger's CLI commands (imported lazily by ``services.ledger.cli``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rationer.api.ledger.v1 import ledger_pb2 as pb
from rationer.cli.credentials import admin_credential
from rationer.errors import InvalidArgument, RationerError
from rationer.platform.money import usd_text, usd_to_nano
from services.ledger import convert as cv
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.client import LedgerClient
from services.ledger.money import to_datetime
from services.ledger.report import key_labels, period_label, period_range, render, usd

# The ledger's hard-limit ceiling (10**18 nano-USD), in the USD the operator types.
MAX_USD_LIMIT = 1_000_000_000
# The ledger's price ceiling per million tokens, in USD (10**11 nano-USD).
MAX_PRICE_USD = 100


def need_token(token: str) -> str:
    # The option, RATIONER_ADMIN_TOKEN, or credentials.json; else UNAUTHENTICATED.
    return admin_credential(token)


async def create_key(ledger: str, token: str, org: str, team: str, user: str, service_account: str,
                     tiers: Sequence[str], ttl_days: float, name: str, admin: bool,
                     project: str = "", role: str = "") -> pb.CreateKeyResponse:  # fmt: skip
    async with LedgerAdminClient(ledger, need_token(token)) as c:
        o = await c.create_org(org)
        t = await c.create_team(o.id, team)
        user_id = (await c.create_user(t.id, user)).id if user else ""
        return await c.create_key(user_id=user_id, team_id=t.id, service_account=service_account,
                                  allowed_tiers=tiers, ttl_s=ttl_days * 86400, name=name, admin=admin,
                                  project=project, role=role)  # fmt: skip


def _key_line(k: pb.ApiKey) -> str:
    state = "revoked" if k.HasField("revoked_at") else "active"
    owner = k.user_id or f"{k.team_id} (service account {k.service_account})"
    tiers = ",".join(k.allowed_tiers) or "*"
    project = f"  project={k.project}" if k.project else ""
    role = f"  role={k.role}" if k.role and k.role != "member" else ""
    return f"{k.key_id}  {k.prefix}…  {state:7}  tiers={tiers}{project}{role}  {owner}  {k.name}"


async def list_keys(ledger: str, token: str, org: str, team: str, include_revoked: bool) -> str:
    async with LedgerAdminClient(ledger, need_token(token)) as c:
        keys = await c.list_keys(org, team, include_revoked)
    return "\n".join(_key_line(k) for k in keys) or "(no keys)"


async def revoke_key(ledger: str, token: str, key_id: str) -> str:
    async with LedgerAdminClient(ledger, need_token(token)) as c:
        return "revoked: " + _key_line(await c.revoke_key(key_id))


def parse_scope(scope: str) -> tuple[str, str]:
    kind, sep, scope_id = scope.partition(":")
    if not sep or kind not in cv.SCOPE_KIND_PB or not scope_id:
        raise InvalidArgument(f"scope must look like org:acme or team:acme/eng, got {scope!r}")
    return kind, scope_id


def _budget_line(b: pb.Budget) -> str:
    unit = cv.UNIT[b.unit]
    fmt = usd if unit == "usd" else str
    remaining = max(0, b.hard_limit - b.spent - b.held)
    return (f"{b.id}  limit={fmt(b.hard_limit)}  spent={fmt(b.spent)}  held={fmt(b.held)}  "
            f"remaining={fmt(remaining)}  soft={b.soft_fraction:g}")  # fmt: skip


async def set_budget(ledger: str, token: str, scope: str, usd_limit: float | None, tokens: int | None,
                     period: str, soft: float, alerts: Sequence[float] = ()) -> str:  # fmt: skip
    kind, scope_id = parse_scope(scope)
    if usd_limit is not None and not 0 <= usd_limit <= MAX_USD_LIMIT:
        raise InvalidArgument(f"--usd must be between 0 and {MAX_USD_LIMIT:,}, got {usd_limit:g}")
    if tokens is not None and tokens < 0:
        raise InvalidArgument(f"--tokens must be 0 or more, got {tokens:,}")
    unit, limit = ("usd", usd_to_nano(usd_limit)) if usd_limit is not None else ("tokens", tokens or 0)
    if period not in cv.PERIOD_PB:
        raise InvalidArgument("--period must be daily, monthly or lifetime")
    async with LedgerAdminClient(ledger, need_token(token)) as c:
        b = await c.set_budget(kind, scope_id, unit=unit, period=period, hard_limit=limit, soft_fraction=soft,
                               alert_fractions=alerts)  # fmt: skip
    return _budget_line(b)


async def show_budgets(ledger: str, token: str, scope: str) -> str:
    kind, scope_id = parse_scope(scope) if scope else ("", "")
    async with LedgerAdminClient(ledger, need_token(token)) as c:
        budgets = await c.list_budgets(kind, scope_id)
    return "\n".join(_budget_line(b) for b in budgets) or "(no budgets)"


def report_period(period: str) -> tuple[int | None, int | None, str]:
    """``--period``: empty = the ledger's current month, ``today`` = its current day, else a fixed one."""
    if not period:
        return None, None, "monthly"
    if period == "today":
        return None, None, "daily"
    start, end = period_range(period)
    return start, end, ""


async def _key_owners(ledger: str, token: str) -> dict[str, str] | None:
    """key id -> who holds it, to label `--by key` rows (None for a non-admin reader)."""
    try:
        async with LedgerAdminClient(ledger, token) as c:
            keys = await c.list_keys(include_revoked=True)
    except RationerError:
        return None
    return key_labels(keys)


async def chargeback(ledger: str, token: str, period: str, by: str, fmt: str) -> str:
    if by not in cv.GROUP_PB:
        raise InvalidArgument(f"--by must be one of {', '.join(cv.GROUP_PB)}")
    start, end, current = report_period(period)
    token = need_token(token)
    async with LedgerClient(ledger, bearer=token) as c:
        rows, start, end = await c.usage_report(start_us=start, end_us=end, group_by=[by], current_period=current)
    names = await _key_owners(ledger, token) if by == "key" else None
    return render(rows, by, fmt, period_label(start, end), names)

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
                    reference: bool, cache_usd: tuple[float | None, float | None] = (None, None)) -> str:  # fmt: skip
    inp, out = _price_nano("--input", inp_usd), _price_nano("--output", out_usd)
    read, write = (None if usd is None else _price_nano(flag, usd)
                   for flag, usd in zip(("--cache-read", "--cache-creation"), cache_usd, strict=True))  # fmt: skip
    async with LedgerAdminClient(ledger, need_token(token)) as c:
        p = await c.set_price(tier, model, inp, out, is_reference=reference, cache_read_per_million=read,
                              cache_creation_per_million=write)  # fmt: skip
    ref = "  (reference for savings)" if p.is_reference else ""
    cache = "".join(f"  {what} {usd_text(getattr(p, f).nano_usd)}/M"
                    for what, f in (("cache read", "cache_read_per_million"),
                                    ("cache write", "cache_creation_per_million")) if p.HasField(f))  # fmt: skip
    return (f"price {p.tier} v{p.version}: {p.model}  input {usd_text(p.input_per_million.nano_usd)}/M  "
            f"output {usd_text(p.output_per_million.nano_usd)}/M{cache}{ref}")  # fmt: skip


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
