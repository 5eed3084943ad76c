"""The reference model savings are measured against (docs/ledger.md, "Savings").

Savings are what an answer would have cost on the reference minus what it
cost. The reference is what the operator configured: ``[router]
reference_tier = "auto"`` takes the most expensive configured frontier tier,
a tier name takes that priced tier (an explicit reference model and price:
``rationer prices set <tier> <model> ...``), and ``"none"`` (or "auto" with no
frontier tier) claims no savings at all, rather than a list price the
gateway never had the option of paying.

The counterfactual usage is the same prompt and the same answer on the
reference: counted with the reference's tokenizer where the router has an
exact one, else the served call's own counts (the tokens the answer really
has, never ``max_tokens``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from services.router.settings import TierSettings
from services.router.tokens import INLINE_COUNT_CHARS, TokenCounter, count_prompt
from services.router.types import Message


@dataclass(frozen=True)
class Reference:
    tier: str = ""  # "" = no reference: no savings are claimed
    counter: TokenCounter | None = None  # the reference's own tokenizer, when exact

    async def usage(
        self, messages: Sequence[Message], answer: str, served_tier: str, prompt: int, completion: int
    ) -> tuple[int, int]:
        """(prompt, completion) tokens the answer would have had on the reference."""
        if not self.tier or served_tier == self.tier or self.counter is None or not self.counter.exact:
            return prompt, completion
        ref_prompt = await count_prompt(self.counter, messages)
        if len(answer) > INLINE_COUNT_CHARS:
            return ref_prompt, await asyncio.to_thread(self.counter.text, answer)
        return ref_prompt, self.counter.text(answer)


def reference_tier(tiers: Sequence[TierSettings], setting: str) -> str:
    """The tier named by ``[router] reference_tier``: "" when there is none."""
    if setting == "none":
        return ""
    if setting != "auto":
        return setting
    frontier = [t for t in tiers if t.kind == "frontier"]
    return max(frontier, key=lambda t: t.rank).name if frontier else ""
