"""Typed settings of the ledger (TOML section ``[ledger]``, env ``RATIONER_LEDGER__*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rationer.platform.secrets import read_secret
from rationer.platform.settings import ServiceSettings


class PriceSetting(BaseModel):
    """A seed price: nano-USD per million input/output tokens."""

    model_config = ConfigDict(extra="forbid")

    tier: str
    model: str
    input_per_million_nano_usd: int = Field(ge=0)
    output_per_million_nano_usd: int = Field(ge=0)


# Local tiers are priced at an amortized compute cost (a CPU core-hour at about
# $0.05 serving a few hundred tokens/s works out to a few cents per million);
# the frontier reference is gpt-4o list price ($2.50/M in, $10/M out).
DEFAULT_PRICES = [
    PriceSetting(tier="local-small", model="SmolLM2-135M-Instruct",
                 input_per_million_nano_usd=10_000_000, output_per_million_nano_usd=20_000_000),
    PriceSetting(tier="local-large", model="gemma-3-270m-it",
                 input_per_million_nano_usd=30_000_000, output_per_million_nano_usd=60_000_000),
    PriceSetting(tier="frontier", model="gpt-4o",
                 input_per_million_nano_usd=2_500_000_000, output_per_million_nano_usd=10_000_000_000),
    # /v1/embeddings (the reserved tier "embeddings"), per million input
    # tokens: MiniLM-L6 has a sixth of SmolLM2-135M's parameters, so a fifth
    # of its price, $0.002/M (256 inputs of ~10 tokens cost ~5 nano-USD).
    PriceSetting(tier="embeddings", model="all-MiniLM-L6-v2",
                 input_per_million_nano_usd=2_000_000, output_per_million_nano_usd=0),
]  # fmt: skip


class LedgerSettings(ServiceSettings):
    listen: str = "127.0.0.1:7401"
    backend: Literal["sqlite", "postgres"] = "sqlite"
    sqlite_path: Path = Path(".rationer/ledger.sqlite3")
    # FULL fsyncs the WAL on every (group) commit: an acknowledged Commit
    # survives power loss, not just kill -9. NORMAL survives kill -9 only.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    group_commit_max_batch: int = Field(256, ge=1)
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/test"
    postgres_pool_min: int = Field(2, ge=1)
    postgres_pool_max: int = Field(16, ge=1)
    db_timeout_s: float = Field(3.0, gt=0)
    # None: rate limits live in this process; a URL: shared by every replica.
    redis_url: str | None = None
    redis_prefix: str = "rationer:rl:"
    # Bearer token for LedgerAdminService; admin API keys also count. None and
    # no admin key: admin RPCs are refused.
    admin_token: str | None = None
    # The same token read from a 0600 file, so the config file itself holds no
    # secret (what `rationer up` writes). Set one of the two, not both.
    admin_token_file: Path | None = None
    reservation_ttl_s: float = Field(300.0, gt=0)
    max_reservation_ttl_s: float = Field(3600.0, gt=0)
    sweep_interval_s: float = Field(30.0, gt=0)
    # How long a resolved key stays cached in this process; bounds how late a
    # revocation made on another replica is noticed.
    auth_cache_ttl_s: float = Field(2.0, ge=0)
    rate_limit_cache_ttl_s: float = Field(5.0, ge=0)
    default_soft_fraction: float = Field(0.8, gt=0, le=1)
    reference_tier: str = "frontier"
    # Budget escrow (PostgreSQL only; docs/ledger.md "Escrow"): each replica
    # holds against its own slices of the budgets instead of locking the
    # budget rows per request. Off by default: one ledger process gains
    # little, and with escrow `spent` lags the events by up to one settle
    # interval and a dead replica's live holds stay counted until its slices
    # expire (their unused room is reclaimed by whoever runs short).
    escrow: bool = False
    escrow_slice_fraction: float = Field(0.5, gt=0, le=1)
    escrow_slice_max_requests: int = Field(256, ge=1)
    escrow_slice_grace_s: float = Field(60.0, gt=0)
    escrow_settle_interval_s: float = Field(1.0, gt=0)
    replica_name: str = ""
    # Budget alerts (docs/console.md, "Budgets & alerts"): the soft lines a
    # new budget gets, the days the run-out forecast measures its rate over,
    # and how often the forecast scan runs.
    default_alert_fractions: list[float] = Field(default_factory=lambda: [0.5, 0.8, 0.95], max_length=10)
    forecast_window_days: int = Field(7, ge=1, le=90)
    forecast_scan_interval_s: float = Field(300.0, gt=0)
    # Webhook delivery: poll interval, per-request timeout, attempts before a
    # delivery is failed, first retry delay (doubling each attempt, capped),
    # and the lease a claimed delivery holds against other replicas.
    webhook_interval_s: float = Field(5.0, gt=0)
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_max_attempts: int = Field(8, ge=1, le=50)
    webhook_backoff_s: float = Field(30.0, gt=0)
    webhook_backoff_max_s: float = Field(3600.0, gt=0)
    webhook_lease_s: float = Field(60.0, gt=0)
    prices: list[PriceSetting] = Field(default_factory=lambda: list(DEFAULT_PRICES))

    @field_validator("default_alert_fractions")
    @classmethod
    def _fractions(cls, fractions: list[float]) -> list[float]:
        if any(not 0 < f <= 1 for f in fractions):
            raise ValueError("default_alert_fractions must each be in (0, 1]")
        return fractions

    @field_validator("prices")
    @classmethod
    def _embeddings_priced(cls, prices: list[PriceSetting]) -> list[PriceSetting]:
        # /v1/embeddings bills the "embeddings" tier: a price list that
        # leaves it out gets the default, so embeddings never go unpriced.
        if any(p.tier == "embeddings" for p in prices):
            return prices
        return [*prices, *(p for p in DEFAULT_PRICES if p.tier == "embeddings")]

    @model_validator(mode="after")
    def _load_admin_token_file(self) -> LedgerSettings:
        if self.admin_token_file is not None:
            token = read_secret(self.admin_token_file, "ledger admin_token_file")
            # Equal values: these settings were dumped and validated again.
            if self.admin_token and self.admin_token != token:
                raise ValueError("set ledger admin_token or admin_token_file, not both")
            self.admin_token = token
        return self
