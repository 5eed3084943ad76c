"""Hand-built replay results with numbers small enough to check by hand."""

from __future__ import annotations

from typing import Any

PRICES: list[dict[str, Any]] = [
    {"tier": "local", "model": "m-local", "input_per_million": 10_000_000, "output_per_million": 20_000_000,
     "is_reference": False},
    {"tier": "frontier", "model": "m-front", "input_per_million": 2_500_000_000,
     "output_per_million": 10_000_000_000, "is_reference": True},
]  # fmt: skip
TIERS = {"local": {"kind": "local", "rank": 0, "model": "m-local"},
         "frontier": {"kind": "frontier", "rank": 1, "model": "m-front"}}  # fmt: skip


def rec(i: int, group: str, *, tier: str = "local", hit: bool = False, status: str = "ok", text: str = "",
        weak: bool | None = True, strong: bool | None = True, tokens: tuple[int, int] = (100, 8),
        cost: int | None = None, complexity: float = 0.1, team: str = "t1", ts: float = 0.0,
        variant: str = "original", downgraded: bool = False) -> dict[str, Any]:  # fmt: skip
    labels: dict[str, Any] = {"group": group, "variant": variant}
    if weak is not None and strong is not None:
        labels |= {"weak_ok": weak, "strong_ok": strong}
    price = PRICES[1] if tier == "frontier" else PRICES[0]
    charged = -(-(tokens[0] * price["input_per_million"] + tokens[1] * price["output_per_million"]) // 1_000_000)
    ok = status == "ok"
    return {
        "i": i, "id": f"r{i}", "ts": ts, "org": "o", "team": team, "user": "u", "project": "", "group": group,
        "labels": labels, "prompt_chars": 400, "max_tokens": 8, "request_id": f"run-{i:06d}", "status": status,
        "error": "", "limit_id": "", "sent_s": 0.0, "lag_s": 0.0, "latency_ms": 10.0 * (i + 1),
        "tier": tier if ok else "", "model": "", "complexity": complexity if ok and not hit else 0.0,
        "cache_hit": hit, "prompt_tokens": tokens[0] if ok else 0, "completion_tokens": tokens[1] if ok else 0,
        "cost": (0 if hit else charged if cost is None else cost) if ok else 0, "savings": 0,
        "downgraded": downgraded, "fallbacks": [], "budget_remaining_fraction": 1.0,
        "gateway_overhead_ms": 1.0 + i, "model_ms": 5.0 if ok and not hit else 0.0,
        "text": text or f"answer-{group}-{tier}",
    }  # fmt: skip


def result(records: list[dict[str, Any]], duration_s: float = 100.0) -> dict[str, Any]:
    return {"format": "rationer-replay-result/1", "trace": {"duration_s": duration_s}, "run": {"address": "x"},
            "tiers": TIERS, "prices": PRICES, "records": records, "ledger": {}}  # fmt: skip
