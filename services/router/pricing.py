"""The router's read-only copy of the ledger's reference price.

Only cache hits use it, to report savings without waiting for the ledger
(the hit's zero-cost event is recorded in the background and the ledger
computes the same figure with the same rounding: ceil on the integer sum).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PriceBook:
    reference_input_per_million: int = 0  # nano-USD per 1M input tokens
    reference_output_per_million: int = 0

    def counterfactual(self, prompt_tokens: int, completion_tokens: int) -> int:
        numer = (
            prompt_tokens * self.reference_input_per_million
            + completion_tokens * self.reference_output_per_million
        )
        return -(-numer // 1_000_000)
