"""The router's read-only copy of the ledger's prices.

Cache hits use the reference price to report savings without waiting for the
ledger. Commits use the served tier's price to answer before the ledger has
confirmed the commit (billing.py): the ledger computes the same figures with
the same rounding (``services/ledger/money.py``). The copy is re-read every
minute, so a price changed meanwhile can make the reported cost of a call in
that minute differ from the billed one; the ledger's bill is the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.ledger.models import Price
from services.ledger.money import cost_nano_usd


@dataclass
class PriceBook:
    reference_input_per_million: int = 0  # nano-USD per 1M input tokens
    reference_output_per_million: int = 0
    # tier -> the ledger's current price (it prices by tier); empty: commits wait for the ledger's figure.
    # None: not kept at all (answer_before_commit off).
    tiers: dict[str, Price] | None = field(default_factory=dict)

    def counterfactual(self, prompt_tokens: int, completion_tokens: int) -> int:
        numer = (
            prompt_tokens * self.reference_input_per_million
            + completion_tokens * self.reference_output_per_million
        )
        return -(-numer // 1_000_000)

    def cost(self, tier: str, prompt: int, completion: int, *, cache_read: int = 0,
             cache_creation: int = 0) -> int | None:  # fmt: skip
        """What the ledger bills within the hold, or None if this copy has no price for the tier."""
        price = self.tiers.get(tier) if self.tiers is not None else None
        if price is None:
            return None
        return cost_nano_usd(prompt, completion, price, cache_read=cache_read, cache_creation=cache_creation)
