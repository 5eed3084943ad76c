"""The two settlement records, typed end to end.

The router builds one, journals it (``asdict`` plus its ``KIND``), the ledger
client sends it, the servicer rebuilds it from the proto and ``Ledger`` takes
it: one name per field from the proto (``ledger.proto`` CommitRequest and
RecordCacheHitRequest; ``usage`` flattened into its two token counts) to SQL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

# The most prompt text a usage event keeps, in characters, for orgs that log prompts.
PROMPT_MAX_CHARS = 4096


def prompt_text(messages: Any) -> str:
    """The logged form of a prompt: ``role: content`` per message, at most PROMPT_MAX_CHARS + 1.

    One character past the limit is kept so the ledger can tell the prompt
    was cut (it stores PROMPT_MAX_CHARS and marks it truncated). Lone
    surrogates (valid JSON escapes, invalid UTF-8) become '?': protobuf
    refuses them, and a prompt must never fail a commit.
    """
    text = "\n".join(f"{m.role}: {m.content}" for m in messages)[: PROMPT_MAX_CHARS + 1]
    return text.encode("utf-8", "replace").decode("utf-8") if not text.isascii() else text


@dataclass(frozen=True)
class CommitCall:
    KIND: ClassVar[str] = "commit"

    reservation_id: str
    key_id: str
    prompt_tokens: int
    completion_tokens: int
    model: str = ""
    tier: str = ""
    latency_ms: int = 0
    fallbacks: int = 0
    # The model has answered: bill it even if the hold expired meanwhile.
    bill_late: bool = False
    finish_note: str = ""  # e.g. "client_disconnected": a partial answer billed as far as it went
    # The reference savings are measured against (ledger.proto Counterfactual):
    # None = unset (the is_reference price on this call's usage), "" = none.
    reference_tier: str | None = None
    reference_prompt_tokens: int = 0
    reference_completion_tokens: int = 0
    # Parts of prompt_tokens read from / written to the provider's prompt cache (own rates).
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    status_code: int = 0  # HTTP status the caller got; 0 = 200, or 499 with a finish_note
    prompt_text: str = ""  # only for orgs that log prompts (Principal.log_prompts)


@dataclass(frozen=True)
class CacheHitCall:
    KIND: ClassVar[str] = "cache_hit"

    key_id: str
    request_id: str
    project: str
    tier: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int = 0
    record_id: str = ""  # idempotency key of this served answer
    served: bool = False  # already served (a replay after an outage): record past any limit
    reference_tier: str | None = None  # as CommitCall's
    reference_prompt_tokens: int = 0
    reference_completion_tokens: int = 0
    status_code: int = 0  # as CommitCall's; 0 = 200
    prompt_text: str = ""  # as CommitCall's

    @property
    def record(self) -> str:
        """The idempotency key: ``record_id``, or the request id (one record per request id)."""
        return self.record_id or self.request_id


SettlementCall = CommitCall | CacheHitCall
_BY_KIND: dict[str, type[CommitCall] | type[CacheHitCall]] = {
    CommitCall.KIND: CommitCall,
    CacheHitCall.KIND: CacheHitCall,
}


def to_record(call: SettlementCall) -> dict[str, Any]:
    """The journal's JSON form: the kind and the fields, nothing else."""
    return {"kind": call.KIND, "fields": asdict(call)}


def from_record(record: dict[str, Any]) -> SettlementCall:
    cls = _BY_KIND[record["kind"]]
    return cls(**record["fields"])
