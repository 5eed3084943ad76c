"""Router settings (TOML section ``[router]``, env ``RATIONER_ROUTER__*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from rationer.platform.secrets import read_secret
from rationer.platform.settings import ServiceSettings


class TokenizerSource(BaseModel):
    """The GGUF whose vocabulary and chat template a local tier's worker uses.

    The same fields as the worker's ``[[worker.models]]`` entry: point them at
    the same file, or holds are sized on another model's token counts (the
    router checks one count against a worker's CountTokens at start).
    """

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    package: str | None = None
    chat_format: Literal["auto", "gguf", "completion"] = "auto"

    @model_validator(mode="after")
    def _one_source(self) -> TokenizerSource:
        if (self.path is None) == (self.package is None):
            raise ValueError("tokenizer: set exactly one of 'path' or 'package'")
        return self


class TierSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    # "anthropic": a frontier tier on an Anthropic Messages endpoint (base_url without /v1).
    kind: Literal["local", "frontier", "anthropic"]
    rank: int
    model: str
    # None: derived from the classifier's operating point (see wiring.tier_specs).
    threshold: float | None = None
    # Frontier only: any OpenAI-compatible endpoint (kind "anthropic": a Messages one).
    base_url: str = ""
    api_key: str = ""
    max_retries: int = 2
    # Frontier only: the model's context window in tokens (prompt + max_tokens), for routing by
    # context length (fit.py). None: unknown, the provider decides. Local tiers report their own.
    context_window: int | None = Field(default=None, gt=0)
    # kind "anthropic" only: mark the system prompt for the provider's prompt
    # cache (reads and writes are then priced at the price row's cache rates).
    cache_system: bool = False
    # Local only: where the tier's tokenizer comes from. None: the worker's
    # default model of the same name (services/slm_worker/settings.py), else
    # the byte bound below.
    tokenizer: TokenizerSource | None = None
    # The byte bound for tiers without a known tokenizer (every frontier
    # tier): a hold counts UTF-8 bytes of each message plus this allowance
    # for the chat template (docs/router.md, "How holds are sized").
    hold_template_tokens_per_message: int = Field(default=16, ge=0)
    hold_template_tokens_fixed: int = Field(default=128, ge=0)
    # The key read from a 0600 file instead (`rationer up` writes one), so
    # the config file holds no secret. Set one of the two, not both.
    api_key_file: Path | None = None

    @model_validator(mode="after")
    def _load_api_key_file(self) -> TierSettings:
        if self.api_key_file is not None:
            key = read_secret(self.api_key_file, f"tier {self.name} api_key_file")
            # Equal values: these settings were dumped and validated again.
            if self.api_key and self.api_key != key:
                raise ValueError(f"tier {self.name}: set api_key or api_key_file, not both")
            self.api_key = key
        return self


class PressureSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    start_fraction: float = 0.5
    strength: float = 1.0
    floor_fraction: float = 0.05


class ConsoleSettings(BaseModel):
    """The FinOps console at ``/console`` on the HTTP door (docs/console.md)."""

    model_config = ConfigDict(extra="forbid")

    # Off without a secret: sessions are sealed with it, so every replica
    # behind one URL must share it. `rationer up` generates one.
    enabled: bool = True
    secret: SecretStr | None = None
    secret_file: Path | None = None
    session_ttl_s: float = Field(default=8 * 3600.0, gt=0, le=30 * 24 * 3600.0)
    # Mark the session cookie Secure even on plain HTTP: a TLS proxy in front.
    behind_tls: bool = False
    # The longest date range a page may ask for.
    max_range_days: int = Field(default=400, gt=0, le=3660)

    @field_validator("secret", mode="before")
    @classmethod
    def _secret_is_text(cls, v: object) -> object:
        return v if v is None or isinstance(v, SecretStr) else str(v)

    @model_validator(mode="after")
    def _load_secret_file(self) -> ConsoleSettings:
        if self.secret_file is not None:
            value = read_secret(self.secret_file, "router http.console secret_file")
            if self.secret is not None and self.secret.get_secret_value() != value:
                raise ValueError("http.console: set secret or secret_file, not both")
            self.secret = SecretStr(value)
        if self.secret is not None and len(self.secret.get_secret_value()) < 16:
            raise ValueError("http.console secret must be at least 16 characters; make one with: "
                             "python -c 'import secrets; print(secrets.token_urlsafe(32))'")  # fmt: skip
        return self

    def secret_value(self) -> str:
        return self.secret.get_secret_value() if self.secret is not None else ""


class HttpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    listen: str = "127.0.0.1:8080"
    # Larger bodies get 413 before any parsing.
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # Empty: CORS off. ["*"] or explicit origins ("https://app.example.com").
    cors_origins: list[str] = Field(default_factory=list)
    # Per-request deadline; a client may ask for less with `x-rationer-timeout`.
    request_timeout_s: float = Field(default=300.0, gt=0)
    max_embedding_inputs: int = Field(default=256, gt=0)
    # How long in-flight requests get to finish on shutdown.
    shutdown_timeout_s: float = Field(default=10.0, ge=0)
    # A request body must arrive within this long once the handler reads it;
    # a stalled upload gets 408 and its connection is closed (docs/http.md).
    body_timeout_s: float = Field(default=30.0, gt=0)
    console: ConsoleSettings = ConsoleSettings()


def default_tiers() -> list[TierSettings]:
    return [
        TierSettings(name="local-small", kind="local", rank=0, model="smollm2-135m-instruct"),
        TierSettings(name="local-large", kind="local", rank=1, model="gemma3-270m"),
    ]


class RouterSettings(ServiceSettings):
    listen: str = "127.0.0.1:7400"
    # "auto": uvloop when it is installed (the `fast` extra; services/router/loop.py), else asyncio's own loop.
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    # Answer once a commit is journaled, not once the ledger confirms it (billing.py; docs/router.md).
    # Off by default: the ledger then shows a call's charge a moment after its answer, not before.
    answer_before_commit: bool = False
    ledger_address: str = "127.0.0.1:7401"
    cache_address: str = ""  # empty disables the cache
    worker_addresses: list[str] = Field(default_factory=lambda: ["127.0.0.1:7403"])
    tiers: list[TierSettings] = Field(default_factory=default_tiers)
    # P(needs strong) at or above which prompts go to the strongest tier; set
    # by `rationer calibrate router`. None keeps the per-tier thresholds.
    strong_threshold: float | None = None
    pressure: PressureSettings = PressureSettings()
    downgrade_on_exhaustion: bool = True
    # Whose requests for a named tier or model may be served by another tier
    # when it is down or over budget (the response then says so in
    # x-rationer-fallbacks): "*" for every key, or "key:<key id>",
    # "team:<team id>", "org:<org id>". Everyone else gets 503 naming the tier.
    fallback_for: list[str] = Field(default_factory=list)
    # What savings are measured against (reference.py, docs/ledger.md "Savings"): "auto" = the most
    # expensive configured frontier tier (none configured: no savings), a priced tier's name, or "none".
    reference_tier: str = "auto"
    auth_cache_ttl_s: float = 5.0
    cache_min_similarity: float = 0.0  # 0 = the cache service default
    default_max_tokens: int = 256
    max_tokens_cap: int = 4096
    max_prompt_chars: int = 64 * 1024
    # Every worker_refresh_s the router re-resolves worker_addresses ("host:port", or "dns:host:port"
    # for one worker per DNS record) and probes each worker's load (ListModels). An unreachable worker
    # is out of rotation at the next probe; one whose probe fails otherwise (too slow) after
    # worker_probe_misses consecutive failures (docs/deploy.md, "Workers").
    worker_refresh_s: float = Field(default=1.0, gt=0)
    worker_probe_misses: int = Field(default=2, ge=1, le=100)
    # Where package-shipped tokenizer GGUFs that come in chunks are assembled
    # (the worker's default, so both share one copy on one host).
    model_cache_dir: str = "~/.cache/rationer/models"
    embedder_model_dir: Path | None = None
    embedder_threads: int = 1
    # Extra wait to gather concurrent prompts into one embedding call; 0 adds
    # no latency and still batches prompts that queue behind a running call.
    embed_batch_window_ms: float = 0.0
    classifier_artifact: Path | None = None
    # Commits and cache-hit records the ledger has not confirmed survive a
    # crash here and are replayed on start (docs/router.md). One file per
    # router replica. "" keeps them in memory only: not durable.
    settlement_journal: Path | None = Path(".rationer/router-settlements.sqlite3")
    # This router replica's name (docs/deploy.md, "Router replicas"). Set, the journal is
    # <stem>.<replica_id><suffix> next to settlement_journal, so replicas sharing a machine or a
    # volume never share a file (a journal held by a live process refuses a second one anyway).
    # Kubernetes: the pod name, from the downward API. "" uses settlement_journal as it is.
    replica_id: str = Field(default="", pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,62})?$")
    # On start, settle the journals other replicas left in the journal's directory
    # (<stem>.*<suffix>, and <stem><suffix> itself) that no live process holds: a replica that
    # never comes back on a shared volume strands no usage (docs/deploy.md).
    adopt_orphaned_journals: bool = False
    http: HttpSettings = HttpSettings()
    # /metrics labels the first N distinct teams by id, the rest "other" (0: no per-team label).
    metrics_max_teams: int = Field(default=50, ge=0, le=1000)

    @field_validator("settlement_journal", mode="before")
    @classmethod
    def _empty_means_memory(cls, v: object) -> object:
        return None if v == "" else v

    @property
    def journal_path(self) -> Path | None:
        """This replica's own journal file; None keeps settlements in memory."""
        return replica_journal(self.settlement_journal, self.replica_id)


def replica_journal(base: Path | None, replica_id: str) -> Path | None:
    """``dir/router-settlements.sqlite3`` + ``r1`` -> ``dir/router-settlements.r1.sqlite3``."""
    if base is None or not replica_id:
        return base
    return base.with_name(f"{base.stem}.{replica_id}{base.suffix}")
