"""Plain domain records of the ledger (no gRPC, no SQL)."""

from __future__ import annotations

from dataclasses import dataclass, field

# One definition for every service; the ledger's modules keep reading it from here.
from rationer.platform.identity import Principal as Principal

SCOPE_KINDS = ("org", "team", "user", "key", "project")


@dataclass(frozen=True)
class AuthorizeInput:
    """One Authorize, as ``ledger.proto`` AuthorizeRequest names it (``estimated_prompt_tokens`` aside)."""

    key_id: str
    tier: str
    model: str = ""
    prompt_tokens: int = 0
    max_completion_tokens: int = 0
    project: str = ""
    request_id: str = ""
    ttl_s: float = 0.0  # 0 = the ledger's default
UNITS = ("usd", "tokens")
PERIODS = ("daily", "monthly", "lifetime")
GROUP_BY = ("team", "user", "project", "model", "day", "tier")
# Events that are usage (what Usage and the chargeback report sum).
USAGE_KINDS = ("charge", "embedding", "cache_hit")
# The tier /v1/embeddings is billed on: open to every key (allowed_tiers
# restrict completion tiers), and its charges are "embedding" events.
EMBEDDINGS_TIER = "embeddings"


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    prefix: str
    org_id: str
    team_id: str
    user_id: str
    service_account: str
    allowed_tiers: tuple[str, ...]
    is_admin: bool
    name: str
    created_at_us: int
    expires_at_us: int | None
    revoked_at_us: int | None
    isolate_teams: bool = False
    project: str = ""
    role: str = "member"  # admin | finops | viewer | member (services.ledger.roles)

    def principal(self) -> Principal:
        tenant = f"{self.org_id}/{self.team_id}" if self.isolate_teams else self.org_id
        return Principal(
            org_id=self.org_id,
            team_id=self.team_id,
            user_id=self.user_id,
            key_id=self.key_id,
            service_account=self.service_account,
            allowed_tiers=self.allowed_tiers,
            tenant=tenant,
            is_admin=self.is_admin,
            expires_at_us=self.expires_at_us,
            project=self.project,
        )


@dataclass(frozen=True)
class Org:
    id: str
    name: str
    isolate_teams: bool


@dataclass(frozen=True)
class Team:
    id: str
    org_id: str
    name: str


@dataclass(frozen=True)
class User:
    id: str
    team_id: str
    email: str


@dataclass(frozen=True)
class Budget:
    id: str
    scope_kind: str
    scope_id: str
    unit: str
    period: str
    hard_limit: int
    soft_fraction: float
    spent: int
    held: int
    period_end_us: int | None
    alert_fractions: tuple[float, ...] = ()  # soft alert lines, fractions of the hard limit


@dataclass(frozen=True)
class Price:
    tier: str
    model: str
    input_per_million: int
    output_per_million: int
    version: int
    effective_from_us: int
    is_reference: bool
    # Prompt-cache rates (nano-USD per 1M tokens); None: the input price.
    cache_read_per_million: int | None = None
    cache_creation_per_million: int | None = None


@dataclass(frozen=True)
class RateLimit:
    scope_kind: str  # key | team
    scope_id: str
    requests_per_minute: int
    tokens_per_minute: int


@dataclass(frozen=True)
class UsageEvent:
    event_id: str
    time_us: int
    kind: str
    request_id: str
    org_id: str
    team_id: str
    user_id: str
    key_id: str
    project: str
    tier: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: int
    counterfactual_cost: int
    cache_hit: bool
    latency_ms: int
    price_version: int
    detail: str = ""
    # True cost (nano-USD) and tokens not charged because a hard-limited
    # budget on the path had no room left (cost + overage = true cost).
    overage: int = 0
    overage_tokens: int = 0


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    held_nano_usd: int
    expires_at_us: int
    soft_alerts: tuple[str, ...] = ()
    min_remaining_fraction: float = 1.0
    replayed: bool = False


@dataclass(frozen=True)
class Denial:
    """A budget said no; returned (not raised) so the denial event commits."""

    limit_id: str
    description: str
    resets_at_us: int | None


@dataclass(frozen=True)
class CommitResult:
    event: UsageEvent
    replayed: bool
    # Reserved minus used tokens: tokens-per-minute capacity to give back.
    unused_tokens: int = 0


@dataclass(frozen=True)
class ReleaseResult:
    released: bool  # False when already released or the hold had expired
    team_id: str
    unused_tokens: int  # the whole reservation, the first time it is released


@dataclass(frozen=True)
class Headroom:
    budget_id: str
    scope_kind: str
    scope_id: str
    unit: str
    remaining_fraction: float
    remaining: int


@dataclass(frozen=True)
class UsageRow:
    group: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: int = 0
    counterfactual_cost: int = 0
    cache_hits: int = 0
    overage: int = 0
    cache_savings: int = 0  # the part of savings from cache hits; the rest is routing
    denials: int = 0  # budget refusals ("denied" events), not in requests
    soft_alerts: int = 0
    wrong_hits: int = 0  # cache hits reported wrong ("wrong_hit" events), not in requests

    @property
    def routing_savings(self) -> int:
        return self.savings - self.cache_savings

    @property
    def savings(self) -> int:
        # Against the true cost: an overage was not charged to a budget, but
        # it was spent all the same.
        return self.counterfactual_cost - self.cost - self.overage


@dataclass(frozen=True)
class CreatedKey:
    key: KeyRecord
    secret: str
