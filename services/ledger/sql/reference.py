"""The counterfactual cost of one answer: what it would have cost on the gateway's reference model.

Savings are ``counterfactual - cost`` (docs/ledger.md, "Savings"). The router
names the reference and the usage the answer would have had there
(``CommitCall.reference_*``); an empty reference claims no savings. A call
from an older router names none, and gets the is_reference price on its own
usage, as before.
"""

from __future__ import annotations

from rationer.errors import NotFound
from services.ledger.calls import CacheHitCall, CommitCall
from services.ledger.money import cost_nano_usd
from services.ledger.sql.common import Op, current_price, reference_price


def counterfactual(c: CommitCall | CacheHitCall, no_savings: int) -> Op[int]:
    """The counterfactual in nano-USD; ``no_savings`` is the figure that claims none (the cost, or 0 for a hit)."""
    if c.reference_tier is None:
        ref = yield from reference_price()
        if ref is None:
            return no_savings
        return cost_nano_usd(c.prompt_tokens, c.completion_tokens, ref)
    if not c.reference_tier:
        return no_savings
    try:
        price = yield from current_price(c.reference_tier)
    except NotFound:
        # The reference lost its price (or never had one): claim nothing rather than guess.
        return no_savings
    cf = cost_nano_usd(c.reference_prompt_tokens, c.reference_completion_tokens, price)
    # Never a negative saving: an answer from the reference itself, or a reference cheaper than the
    # tier that served, saved nothing.
    return max(cf, no_savings)
