"""The replay summary: totals, per team, cache, tiers, latency, budgets, time series, curve.

``summarize(result)`` turns a saved replay result (see ``cli.bench_replay``)
into one JSON-ready dict; the report and ``bench replay --json`` print it.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from rationer.replay.analysis import (
    POLICIES,
    PriceRow,
    Pricing,
    Replay,
    all_policies,
    is_labelled,
    label_q,
    percentiles,
    strong_share,
)

NANO = 1_000_000_000


def request_of(ledger_request_id: str) -> str:
    """The router request id of a ledger event (attempts append ``:<tier>`` or ``#<tier>``)."""
    return re.split(r"[:#]", ledger_request_id, maxsplit=1)[0]


def pricing_of(result: dict[str, Any]) -> Pricing:
    return Pricing([PriceRow(**p) for p in result["prices"]], result["tiers"])


def _totals(rp: Replay, lines: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    labelled = [i for i, r in enumerate(rp.records) if is_labelled(r)]
    ref_q = sum(lines["all_frontier"][i][1] for i in labelled) or 1.0
    ref_cost = sum(c for c, _ in lines["all_frontier"]) or 1.0
    out: dict[str, Any] = {}
    for name in POLICIES:
        cost = sum(c for c, _ in lines[name])
        quality = sum(lines[name][i][1] for i in labelled)
        out[name] = {
            "cost_nano_usd": round(cost), "cost_usd": cost / NANO,
            "cost_vs_all_frontier": cost / ref_cost, "quality": quality / len(labelled) if labelled else 0.0,
            "quality_retained": quality / ref_q,
        }  # fmt: skip
    gw = out["gateway"]["cost_nano_usd"]
    for name in POLICIES[1:]:
        base = out[name]["cost_nano_usd"]
        out[name]["gateway_savings_pct"] = 100.0 * (1 - gw / base) if base else 0.0
    return out


def _by_team(rp: Replay, lines: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    teams: dict[str, dict[str, Any]] = defaultdict(lambda: {n: 0.0 for n in POLICIES} | {"requests": 0})
    for i, r in enumerate(rp.records):
        t = teams[r["team"]]
        t["requests"] += 1
        for name in POLICIES:
            t[name] += lines[name][i][0]
    out = {}
    for team, t in sorted(teams.items()):
        row = {"requests": t["requests"], **{f"{n}_cost_nano_usd": round(t[n]) for n in POLICIES}}
        for n in POLICIES[1:]:
            row[f"savings_vs_{n}_pct"] = 100.0 * (1 - t["gateway"] / t[n]) if t[n] else 0.0
        out[team] = row
    return out


def _cache(rp: Replay) -> dict[str, Any]:
    hits = [i for i, h in enumerate(rp.hit_right) if h is not None]
    wrong = [i for i in hits if not rp.hit_right[i]]
    repeats = [r for r in rp.records if r["labels"].get("variant") in ("exact", "paraphrase")]
    by_variant: dict[str, Counter[str]] = defaultdict(Counter)
    for i, r in enumerate(rp.records):
        v = str(r["labels"].get("variant", "unlabelled"))
        by_variant[v]["requests"] += 1
        if rp.hit_right[i] is not None:
            by_variant[v]["hits"] += 1
            by_variant[v]["wrong_hits"] += not rp.hit_right[i]
    n = len(rp.records)
    return {
        "hits": len(hits), "hit_rate": len(hits) / n if n else 0.0,
        "wrong_hits": len(wrong), "wrong_hit_rate": len(wrong) / len(hits) if hits else 0.0,
        "ambiguous_right_hits": sum(rp.ambiguous_hit(rp.records[i]) for i in hits if rp.hit_right[i]),
        "repeats": len(repeats),
        "repeat_hit_rate": sum(rp.hit_right[r["i"]] is not None for r in repeats) / len(repeats) if repeats else 0.0,
        "by_variant": {k: dict(v) for k, v in sorted(by_variant.items())},
    }  # fmt: skip


def _latency(records: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in records if r["status"] == "ok"]
    miss = [r for r in ok if not r["cache_hit"]]
    hit = [r for r in ok if r["cache_hit"]]
    # Per tier too: a backend whose reported model time is off shows up here alone.
    per_tier = {
        f"{tier}_gateway_overhead_ms": percentiles([r["gateway_overhead_ms"] for r in miss if r["tier"] == tier])
        for tier in sorted({r["tier"] for r in miss})
    }
    return per_tier | {
        "end_to_end_ms": percentiles([r["latency_ms"] for r in ok]),
        "gateway_overhead_ms": percentiles([r["gateway_overhead_ms"] for r in ok]),
        "model_ms": percentiles([r["model_ms"] for r in miss]),
        "miss_end_to_end_ms": percentiles([r["latency_ms"] for r in miss]),
        "hit_end_to_end_ms": percentiles([r["latency_ms"] for r in hit]),
        "miss_gateway_overhead_ms": percentiles([r["gateway_overhead_ms"] for r in miss]),
    }


def _outcome(r: dict[str, Any]) -> str:
    if r["status"] != "ok":
        return str(r["status"])
    return "cache" if r["cache_hit"] else str(r["tier"])


def _bins(records: list[dict[str, Any]], duration: float, n: int = 24) -> list[int]:
    span = max(duration, max((r["ts"] for r in records), default=0.0), 1e-9)
    return [min(int(r["ts"] / span * n), n - 1) for r in records]


def _series(rp: Replay, lines: dict[str, list[tuple[float, float]]], result: dict[str, Any]) -> dict[str, Any]:
    n = 24
    duration = float(result.get("trace", {}).get("duration_s") or 0.0)
    bins = _bins(rp.records, duration, n)
    cost = {name: [0.0] * n for name in POLICIES}
    mix: list[Counter[str]] = [Counter() for _ in range(n)]
    events: dict[str, list[Counter[str]]] = defaultdict(lambda: [Counter() for _ in range(n)])
    for i, r in enumerate(rp.records):
        for name in POLICIES:
            cost[name][bins[i]] += lines[name][i][0]
        mix[bins[i]][_outcome(r)] += 1
        if r["downgraded"]:
            events[r["team"]][bins[i]]["downgrades"] += 1
        if r["status"] == "denied":
            events[r["team"]][bins[i]]["denials"] += 1
    by_req = {r["request_id"]: i for i, r in enumerate(rp.records)}
    # Ledger events: soft alerts, and every refused hold (also those a downgrade rescued).
    for key, name in (("soft_alerts", "soft_alerts"), ("denied_holds", "refused_holds")):
        for ev in result.get("ledger", {}).get(key, []):
            idx = by_req.get(request_of(str(ev.get("request_id", ""))))
            if idx is not None:
                events[rp.records[idx]["team"]][bins[idx]][name] += 1
    span = max(duration, max((r["ts"] for r in rp.records), default=0.0))
    return {
        "bin_s": span / n, "cost_nano_usd": {k: [round(x) for x in v] for k, v in cost.items()},
        "outcomes": [dict(c) for c in mix],
        "budget_events": {team: [dict(c) for c in v] for team, v in sorted(events.items())},
    }  # fmt: skip


def _budget_totals(series: dict[str, Any]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for team, bins in series["budget_events"].items():
        total: Counter[str] = Counter()
        for b in bins:
            total.update(b)
        out[team] = {k: int(total.get(k, 0)) for k in ("soft_alerts", "downgrades", "denials", "refused_holds")}
    return out


def curve(rp: Replay) -> dict[str, Any]:
    """Cost and quality (vs all-frontier) when the top-k scored lines go frontier, k = 0..n."""
    p = rp.pricing
    rows = [(s, i) for i in range(len(rp.records)) if is_labelled(rp.records[i]) and (s := rp.score(i)) is not None]
    rows.sort(key=lambda t: -t[0])
    ref = [p.cost(p.reference.tier, rp.tokens[i]) for _, i in rows]
    loc = [p.cost(rp.local_tier(i), rp.tokens[i]) for _, i in rows]
    qs = [label_q(rp.records[i], True) for _, i in rows]
    qw = [label_q(rp.records[i], False) for _, i in rows]
    ref_cost, ref_q = sum(ref) or 1, sum(qs) or 1.0
    points, cost, q = [], float(sum(loc)), float(sum(qw))
    step = max(1, len(rows) // 100)
    for k in range(len(rows) + 1):
        if k % step == 0 or k == len(rows):
            points.append({"strong_share": k / len(rows) if rows else 0.0, "cost_frac": cost / ref_cost,
                           "quality_frac": q / ref_q, "threshold": rows[k - 1][0] if k else 1.0})  # fmt: skip
        if k < len(rows):
            cost += ref[k] - loc[k]
            q += qs[k] - qw[k]
    return {"lines": len(rows), "points": points}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    rp = Replay(result["records"], pricing_of(result))
    lines = all_policies(rp)
    series = _series(rp, lines, result)
    status = Counter(r["status"] for r in rp.records)
    return {
        "requests": len(rp.records), "status": dict(status),
        "labelled": sum(is_labelled(r) for r in rp.records),
        "reference_tier": rp.pricing.reference.tier,
        "routing_strong_share": strong_share(rp),
        "policies": _totals(rp, lines), "by_team": _by_team(rp, lines), "cache": _cache(rp),
        "tier_mix": dict(Counter(_outcome(r) for r in rp.records)), "latency": _latency(rp.records),
        "budget_events": _budget_totals(series), "series": series, "curve": curve(rp),
        "run": result.get("run", {}), "ledger_check": result.get("ledger", {}).get("check"),
        "driver_check": result.get("driver_check"),
    }  # fmt: skip
