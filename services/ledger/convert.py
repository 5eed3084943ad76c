"""Proto <-> domain conversions, shared by the servicers and the client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from rationer.api.common.v1 import common_pb2
from rationer.api.ledger.v1 import ledger_pb2 as pb
from rationer.errors import InvalidArgument
from services.ledger import models as m
from services.ledger.calls import CacheHitCall, CommitCall

SCOPE_KIND = {pb.SCOPE_KIND_ORG: "org", pb.SCOPE_KIND_TEAM: "team", pb.SCOPE_KIND_USER: "user",
              pb.SCOPE_KIND_KEY: "key", pb.SCOPE_KIND_PROJECT: "project"}  # fmt: skip
UNIT = {pb.BUDGET_UNIT_USD: "usd", pb.BUDGET_UNIT_TOKENS: "tokens"}
PERIOD = {pb.BUDGET_PERIOD_DAILY: "daily", pb.BUDGET_PERIOD_MONTHLY: "monthly",
          pb.BUDGET_PERIOD_LIFETIME: "lifetime"}  # fmt: skip
GROUP = {pb.GROUP_BY_TEAM: "team", pb.GROUP_BY_USER: "user", pb.GROUP_BY_PROJECT: "project",
         pb.GROUP_BY_MODEL: "model", pb.GROUP_BY_DAY: "day", pb.GROUP_BY_TIER: "tier", pb.GROUP_BY_ORG: "org",
         pb.GROUP_BY_KEY: "key"}  # fmt: skip
SCOPE_KIND_PB = {v: k for k, v in SCOPE_KIND.items()}
UNIT_PB = {v: k for k, v in UNIT.items()}
PERIOD_PB = {v: k for k, v in PERIOD.items()}
GROUP_PB = {v: k for k, v in GROUP.items()}


def enum_in(table: Mapping[Any, str], value: int, field: str) -> str:
    if value not in table:
        raise InvalidArgument(f"{field} must be one of {', '.join(table.values())} (got enum value {value})")
    return table[value]


def ts(us: int | None) -> Timestamp | None:
    if us is None:
        return None
    return Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


# The range google.protobuf.Timestamp defines: 0001-01-01 to 9999-12-31 UTC.
MIN_TS_SECONDS, MAX_TS_SECONDS = -62_135_596_800, 253_402_300_799


def us_of(t: Timestamp, present: bool = True, what: str = "timestamp") -> int | None:
    if not present or (t.seconds == 0 and t.nanos == 0):
        return None
    if not (MIN_TS_SECONDS <= t.seconds <= MAX_TS_SECONDS and 0 <= t.nanos < 1_000_000_000):
        raise InvalidArgument(
            f"{what} is not a valid timestamp (seconds={t.seconds}, nanos={t.nanos}); it must lie between "
            "0001-01-01 and 9999-12-31 UTC with nanos in 0..999,999,999"
        )
    return t.seconds * 1_000_000 + t.nanos // 1000


def seconds_of(d: Duration) -> float:
    return d.seconds + d.nanos / 1e9


def duration(seconds: float) -> Duration:
    whole = int(seconds)
    return Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))


def money(nano: int) -> common_pb2.Money:
    return common_pb2.Money(nano_usd=nano)


def principal(p: m.Principal) -> common_pb2.Principal:
    return common_pb2.Principal(
        org_id=p.org_id, team_id=p.team_id, user_id=p.user_id, key_id=p.key_id,
        service_account=p.service_account, allowed_tiers=list(p.allowed_tiers), tenant=p.tenant,
        is_admin=p.is_admin, project=p.project,
    )  # fmt: skip


def principal_in(p: common_pb2.Principal) -> m.Principal:
    return m.Principal(org_id=p.org_id, team_id=p.team_id, user_id=p.user_id, key_id=p.key_id,
                       service_account=p.service_account, allowed_tiers=tuple(p.allowed_tiers), tenant=p.tenant,
                       is_admin=p.is_admin, project=p.project)  # fmt: skip


def api_key(k: m.KeyRecord) -> pb.ApiKey:
    return pb.ApiKey(
        key_id=k.key_id, prefix=k.prefix, user_id=k.user_id, team_id=k.team_id,
        service_account=k.service_account, allowed_tiers=list(k.allowed_tiers),
        created_at=ts(k.created_at_us), expires_at=ts(k.expires_at_us), revoked_at=ts(k.revoked_at_us),
        name=k.name, project=k.project, role=k.role,
    )  # fmt: skip


def scope(kind: str, scope_id: str) -> pb.Scope:
    return pb.Scope(kind=SCOPE_KIND_PB[kind], id=scope_id)


def budget(b: m.Budget) -> pb.Budget:
    return pb.Budget(
        id=b.id, scope=scope(b.scope_kind, b.scope_id), unit=UNIT_PB[b.unit], period=PERIOD_PB[b.period],
        hard_limit=b.hard_limit, soft_fraction=b.soft_fraction, spent=b.spent, held=b.held,
        period_end=ts(b.period_end_us), alert_fractions=list(b.alert_fractions),
    )  # fmt: skip


def price(p: m.Price) -> pb.Price:
    return pb.Price(
        tier=p.tier, model=p.model, input_per_million=money(p.input_per_million),
        output_per_million=money(p.output_per_million), version=p.version,
        effective_from=ts(p.effective_from_us), is_reference=p.is_reference,
        cache_read_per_million=None if p.cache_read_per_million is None else money(p.cache_read_per_million),
        cache_creation_per_million=(None if p.cache_creation_per_million is None
                                    else money(p.cache_creation_per_million)),
    )  # fmt: skip


def event(e: m.UsageEvent) -> pb.UsageEvent:
    return pb.UsageEvent(
        event_id=e.event_id, time=ts(e.time_us), request_id=e.request_id, org_id=e.org_id,
        team_id=e.team_id, user_id=e.user_id, key_id=e.key_id, project=e.project, tier=e.tier,
        model=e.model, prompt_tokens=e.prompt_tokens, completion_tokens=e.completion_tokens,
        cost=money(e.cost), counterfactual_cost=money(e.counterfactual_cost), cache_hit=e.cache_hit,
        latency_ms=e.latency_ms, price_version=e.price_version, kind=e.kind, detail=e.detail,
        overage=money(e.overage), overage_tokens=e.overage_tokens,
    )  # fmt: skip


def event_in(e: pb.UsageEvent) -> m.UsageEvent:
    return m.UsageEvent(
        e.event_id, us_of(e.time) or 0, e.kind, e.request_id, e.org_id, e.team_id, e.user_id, e.key_id,
        e.project, e.tier, e.model, e.prompt_tokens, e.completion_tokens, e.cost.nano_usd,
        e.counterfactual_cost.nano_usd, e.cache_hit, e.latency_ms, e.price_version, e.detail,
        e.overage.nano_usd, e.overage_tokens,
    )  # fmt: skip


def usage_row(r: m.UsageRow) -> pb.UsageRow:
    return pb.UsageRow(
        group=r.group, requests=r.requests, prompt_tokens=r.prompt_tokens,
        completion_tokens=r.completion_tokens, cost=money(r.cost),
        counterfactual_cost=money(r.counterfactual_cost), cache_hits=r.cache_hits, savings=money(r.savings),
        overage=money(r.overage), cache_savings=money(r.cache_savings), denials=r.denials,
        soft_alerts=r.soft_alerts, wrong_hits=r.wrong_hits,
    )  # fmt: skip


def usage_row_in(r: pb.UsageRow) -> m.UsageRow:
    return m.UsageRow(dict(r.group), r.requests, r.prompt_tokens, r.completion_tokens, r.cost.nano_usd,
                      r.counterfactual_cost.nano_usd, r.cache_hits, r.overage.nano_usd, r.cache_savings.nano_usd,
                      r.denials, r.soft_alerts, r.wrong_hits)  # fmt: skip


def usage(prompt: int, completion: int) -> common_pb2.Usage:
    return common_pb2.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def commit_request(c: CommitCall) -> pb.CommitRequest:
    return pb.CommitRequest(reservation_id=c.reservation_id, key_id=c.key_id,
                            usage=usage(c.prompt_tokens, c.completion_tokens), model=c.model, tier=c.tier,
                            latency_ms=c.latency_ms, fallbacks=c.fallbacks, bill_late=c.bill_late,
                            finish_note=c.finish_note, counterfactual=_reference_out(c),
                            cache_read_tokens=c.cache_read_tokens,
                            cache_creation_tokens=c.cache_creation_tokens)  # fmt: skip


def commit_call(r: pb.CommitRequest) -> CommitCall:
    """The record a CommitRequest carries; ``usage.total_tokens`` is checked here, the one field it drops."""
    u = r.usage
    if u.total_tokens and u.total_tokens != u.prompt_tokens + u.completion_tokens:
        raise InvalidArgument(
            f"usage.total_tokens ({u.total_tokens}) must equal prompt_tokens + completion_tokens "
            f"({u.prompt_tokens + u.completion_tokens}) or be 0"
        )
    cached = (r.cache_read_tokens, r.cache_creation_tokens)
    if min(cached) < 0 or sum(cached) > u.prompt_tokens:
        raise InvalidArgument(
            f"cache_read_tokens ({cached[0]}) and cache_creation_tokens ({cached[1]}) are parts of "
            f"usage.prompt_tokens ({u.prompt_tokens}): each >= 0 and together at most it"
        )
    return CommitCall(r.reservation_id, r.key_id, u.prompt_tokens, u.completion_tokens, model=r.model,
                      tier=r.tier, latency_ms=r.latency_ms, fallbacks=r.fallbacks, bill_late=r.bill_late,
                      finish_note=r.finish_note, cache_read_tokens=cached[0],
                      cache_creation_tokens=cached[1], **_reference_in(r))  # fmt: skip


def _reference_in(r: pb.CommitRequest | pb.RecordCacheHitRequest) -> dict[str, Any]:
    if not r.HasField("counterfactual"):
        return {}
    cf = r.counterfactual
    return {"reference_tier": cf.tier, "reference_prompt_tokens": cf.usage.prompt_tokens,
            "reference_completion_tokens": cf.usage.completion_tokens}  # fmt: skip


def _reference_out(c: CommitCall | CacheHitCall) -> pb.Counterfactual | None:
    if c.reference_tier is None:
        return None
    return pb.Counterfactual(tier=c.reference_tier,
                             usage=usage(c.reference_prompt_tokens, c.reference_completion_tokens))  # fmt: skip


def cache_hit_request(c: CacheHitCall) -> pb.RecordCacheHitRequest:
    return pb.RecordCacheHitRequest(key_id=c.key_id, request_id=c.request_id, project=c.project, tier=c.tier,
                                    model=c.model, usage=usage(c.prompt_tokens, c.completion_tokens),
                                    latency_ms=c.latency_ms, record_id=c.record_id, served=c.served,
                                    counterfactual=_reference_out(c))  # fmt: skip


def cache_hit_call(r: pb.RecordCacheHitRequest) -> CacheHitCall:
    return CacheHitCall(r.key_id, r.request_id, r.project, r.tier, r.model, r.usage.prompt_tokens,
                        r.usage.completion_tokens, latency_ms=r.latency_ms, record_id=r.record_id,
                        served=r.served, **_reference_in(r))  # fmt: skip
