"""Quality, baselines and savings from a replay's records. Pure arithmetic.

Method (also stated in the report):

* **Quality** of a labelled line is its labelled correctness for the tier
  that answered: local tiers count as the weak model, frontier tiers as the
  strong one. A cache hit is *right* when its text equals an answer a model
  produced for the same prompt group (the trace's exact and paraphrased
  repeats share a group) and then inherits that tier's label; any other hit
  is *wrong* and scores 0. Denied and failed requests score 0.
* **Tokens** for the baselines are the ones observed in the replay (a cache
  hit reports the tokens of the answer it reused). A line with no observed
  tokens (denied, failed) takes its group's observation, else ~4 characters a
  token plus 8 for the chat template, and ``max_tokens`` out.
* **Cost** of a line on a tier = ceil((prompt x input + completion x output)
  / 10^6) nano-USD at the ledger's current price (ListPrices), exactly the
  ledger's own formula. The gateway's cost is what the ledger charged.
* Baselines serve every line (no budgets): ``all_frontier`` on the reference
  tier; ``cache_only`` = the same cache hits, every miss on the reference
  tier; ``routing_only`` = the router's tier for every line with no cache (a
  hit uses the tier that produced the cached answer, a line never routed uses
  its group's tier, else the reference tier); ``random`` = each line goes
  frontier with probability s (routing_only's strong share), else to its
  local tier, in expectation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rationer.errors import FailedPrecondition

Rec = dict[str, Any]
POLICIES = ("gateway", "all_frontier", "cache_only", "routing_only", "random")


@dataclass(frozen=True)
class PriceRow:
    tier: str
    model: str
    input_per_million: int
    output_per_million: int
    is_reference: bool = False


def cost_nano(prompt: int, completion: int, p: PriceRow) -> int:
    """The ledger's formula: exact integers, rounded up once per charge."""
    return -(-(prompt * p.input_per_million + completion * p.output_per_million) // 1_000_000)


class Pricing:
    def __init__(self, prices: Iterable[PriceRow], tiers: dict[str, dict[str, Any]]) -> None:
        self.by_tier = {p.tier: p for p in prices}
        refs = [p for p in self.by_tier.values() if p.is_reference]
        if not refs:
            raise FailedPrecondition("the ledger has no reference price; set one (SetPrice is_reference=true)")
        self.reference = refs[0]
        self.kinds = {name: str(t.get("kind", "local")) for name, t in tiers.items()}
        self.kinds.setdefault(self.reference.tier, "frontier")
        locals_ = sorted((t for t, k in self.kinds.items() if k == "local" and t in self.by_tier),
                         key=lambda t: self.by_tier[t].input_per_million)  # fmt: skip
        self.cheapest_local = locals_[0] if locals_ else self.reference.tier

    def cost(self, tier: str, tokens: tuple[int, int]) -> int:
        if tier not in self.by_tier:
            raise FailedPrecondition(f"tier {tier!r} has no price in the ledger; set one with SetPrice")
        return cost_nano(tokens[0], tokens[1], self.by_tier[tier])

    def strong(self, tier: str) -> bool:
        return self.kinds.get(tier) == "frontier"


def is_labelled(r: Rec) -> bool:
    return "weak_ok" in r["labels"] and "strong_ok" in r["labels"]


def label_q(r: Rec, strong: bool) -> float:
    return float(bool(r["labels"]["strong_ok" if strong else "weak_ok"]))


class Replay:
    """Derived per-line facts shared by every policy."""

    def __init__(self, records: Sequence[Rec], pricing: Pricing) -> None:
        self.records = sorted(records, key=lambda r: r["i"])
        self.pricing = pricing
        self._group_obs: dict[str, Rec] = {}
        self._answers: dict[str, set[str]] = defaultdict(set)
        self._texts_any: dict[str, set[str]] = defaultdict(set)
        for r in self.records:
            if r["status"] == "ok" and not r["cache_hit"]:
                self._group_obs.setdefault(r["group"], r)
                self._answers[r["group"]].add(r["text"])
                self._texts_any[r["text"]].add(r["group"])
        self.tokens = [self._tokens(r) for r in self.records]
        self.hit_right = [self._hit_right(r) for r in self.records]
        self.route_tier = [self._route_tier(r) for r in self.records]

    def _tokens(self, r: Rec) -> tuple[int, int]:
        if r["status"] == "ok":
            return int(r["prompt_tokens"]), int(r["completion_tokens"])
        seen = self._group_obs.get(r["group"])
        if seen is not None:
            return int(seen["prompt_tokens"]), int(seen["completion_tokens"])
        return math.ceil(r["prompt_chars"] / 4) + 8, int(r["max_tokens"])

    def _hit_right(self, r: Rec) -> bool | None:
        if r["status"] != "ok" or not r["cache_hit"]:
            return None
        return r["text"] in self._answers.get(r["group"], set())

    def ambiguous_hit(self, r: Rec) -> bool:
        """A right hit whose text some other group's answer also had."""
        return bool(self._texts_any.get(r["text"], set()) - {r["group"]})

    def _route_tier(self, r: Rec) -> str:
        if r["status"] == "ok":
            return str(r["tier"])
        seen = self._group_obs.get(r["group"])
        return str(seen["tier"]) if seen is not None else self.pricing.reference.tier

    def local_tier(self, idx: int) -> str:
        tier = self.route_tier[idx]
        return tier if not self.pricing.strong(tier) else self.pricing.cheapest_local

    def score(self, idx: int) -> float | None:
        """The classifier score of the line (a hit borrows its group's)."""
        r = self.records[idx]
        if r["status"] == "ok" and not r["cache_hit"]:
            return float(r["complexity"])
        seen = self._group_obs.get(r["group"])
        return float(seen["complexity"]) if seen is not None else None


def gateway_line(rp: Replay, i: int) -> tuple[float, float]:
    r = rp.records[i]
    if r["status"] != "ok" or not is_labelled(r):
        return float(r["cost"]), 0.0
    if r["cache_hit"] and not rp.hit_right[i]:
        return float(r["cost"]), 0.0
    return float(r["cost"]), label_q(r, rp.pricing.strong(r["tier"]))


def policy_lines(rp: Replay, name: str, strong_share: float = 0.0) -> list[tuple[float, float]]:
    """(cost nano-USD, quality in [0, 1]) per line under one policy."""
    p, out = rp.pricing, []
    ref = p.reference.tier
    for i, r in enumerate(rp.records):
        lab = is_labelled(r)
        if name == "gateway":
            out.append(gateway_line(rp, i))
        elif name == "all_frontier":
            out.append((float(p.cost(ref, rp.tokens[i])), label_q(r, True) if lab else 0.0))
        elif name == "cache_only":
            if rp.hit_right[i] is not None:
                out.append((0.0, label_q(r, True) if lab and rp.hit_right[i] else 0.0))
            else:
                out.append((float(p.cost(ref, rp.tokens[i])), label_q(r, True) if lab else 0.0))
        elif name == "routing_only":
            tier = rp.route_tier[i]
            out.append((float(p.cost(tier, rp.tokens[i])), label_q(r, p.strong(tier)) if lab else 0.0))
        elif name == "random":
            s = strong_share
            c = s * p.cost(ref, rp.tokens[i]) + (1 - s) * p.cost(rp.local_tier(i), rp.tokens[i])
            out.append((c, s * label_q(r, True) + (1 - s) * label_q(r, False) if lab else 0.0))
        else:
            raise ValueError(f"unknown policy {name!r}")
    return out


def strong_share(rp: Replay) -> float:
    n = len(rp.records)
    return sum(rp.pricing.strong(t) for t in rp.route_tier) / n if n else 0.0


def all_policies(rp: Replay) -> dict[str, list[tuple[float, float]]]:
    s = strong_share(rp)
    return {name: policy_lines(rp, name, s) for name in POLICIES}


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "n": 0}
    xs = sorted(values)

    def q(f: float) -> float:
        # Nearest-rank: an observed value, never an interpolation.
        return float(xs[min(len(xs) - 1, max(0, math.ceil(f * len(xs)) - 1))])

    return {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "n": len(xs)}
