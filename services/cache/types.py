"""Plain data types of the cache, shared by the domain, the servicer and the
client (no gRPC imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from services.cache import keys

MatchKind = Literal["", "exact", "semantic"]


@dataclass(frozen=True)
class CacheContext:
    """What the answer depends on besides the conversation text."""

    tier_class: str = ""
    system_prompt: str = ""
    max_tokens: int = 0
    params_digest: str = ""

    @property
    def key(self) -> str:
        return keys.context_key(self.tier_class, self.system_prompt, self.max_tokens, self.params_digest)


@dataclass(frozen=True)
class EntryMetadata:
    model: str = ""
    tier: str = ""
    created_at: float = 0.0  # unix seconds; set by the cache on store
    saved_nano_usd: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class LookupQuery:
    tenant: str
    text: str
    vector: npt.NDArray[np.float32] | None = None
    context: CacheContext = field(default_factory=CacheContext)
    min_similarity: float = 0.0  # 0 = the service default
    disable_guard: bool = False
    exact_only: bool = False
    # Set by the router so that this key can later report a hit as wrong.
    request_id: str = ""
    key_id: str = ""


@dataclass(frozen=True)
class LookupResult:
    hit: bool
    entry_id: str = ""
    answer: str = ""
    metadata: EntryMetadata | None = None
    similarity: float = 0.0
    match_kind: MatchKind = ""
    guard_rejection: str = ""


@dataclass(frozen=True)
class StoreCommand:
    tenant: str
    text: str
    answer: str
    vector: npt.NDArray[np.float32] | None = None
    context: CacheContext = field(default_factory=CacheContext)
    metadata: EntryMetadata = field(default_factory=EntryMetadata)
    ttl_s: float = 0.0  # 0 = the service default


@dataclass(frozen=True)
class StoreResult:
    entry_id: str
    evicted: int


@dataclass(frozen=True)
class CacheStats:
    entries: int = 0
    tenants: int = 0
    hits: int = 0
    misses: int = 0
    guard_rejections: int = 0
    evictions: int = 0
    wrong_hits: int = 0


@dataclass(frozen=True)
class WrongHitResult:
    entry_id: str
    evicted: bool  # False when the entry had already gone (TTL, eviction, an earlier report)
    already_reported: bool
