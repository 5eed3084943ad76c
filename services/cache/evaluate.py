"""``rationer eval cache``: the fow-cache labelled pairs through the real cache.

For each pair a fresh tenant stores question ``a`` and looks up ``b`` through
:class:`SemanticCache` (real ONNX embedder, real FAISS, the guard and the
default thresholds), so the table is what the service would do. The sweep
re-judges the same similarities and guard verdicts at other thresholds.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rationer.embedding import Embedder
from rationer.embedding.batcher import MicroBatcher
from services.cache import guard, keys
from services.cache.cache import CachePolicy, SemanticCache
from services.cache.types import LookupQuery, StoreCommand

TRAP_CATEGORIES = ("negation", "entity_swap", "number_date", "scope")
HIT_CATEGORIES = ("paraphrase", "near_repeat")
SWEEP = (0.4, 0.45, 0.5, 0.55, 0.6, 0.62, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


@dataclass(frozen=True)
class PairResult:
    group: str
    same_answer: bool
    similarity: float
    served: bool
    guard_ok: bool
    reworded: bool
    exact: bool


def _rates(results: list[PairResult], served: list[bool]) -> dict[str, Any]:
    hits = [s for r, s in zip(results, served, strict=True) if r.same_answer]
    traps = [s for r, s in zip(results, served, strict=True) if not r.same_answer]
    by_group: dict[str, list[bool]] = defaultdict(list)
    for r, s in zip(results, served, strict=True):
        by_group[r.group].append(s)
    return {
        "hit_rate": float(np.mean(hits)) if hits else 0.0,
        "wrong_rate": float(np.mean(traps)) if traps else 0.0,
        "by_group": {g: float(np.mean(v)) for g, v in by_group.items()},
        "n_should_hit": len(hits),
        "n_traps": len(traps),
    }


def _served_at(r: PairResult, t: float, t_reworded: float, use_guard: bool) -> bool:
    if r.exact:
        return True
    if not use_guard:
        return r.similarity >= t
    return r.guard_ok and r.similarity >= (max(t, t_reworded) if r.reworded else t)


def sweep(results: list[PairResult], policy: CachePolicy) -> list[dict[str, Any]]:
    """Three curves: similarity alone at t; the guard with both thresholds at
    t (reworded = max(t, default)); the guard with the verified threshold at
    its default and the reworded threshold at t."""
    rows = []
    for t in SWEEP:
        for mode in ("similarity_only", "guard", "guard_reworded_at_t"):
            verified = policy.min_similarity if mode == "guard_reworded_at_t" else t
            reworded = t if mode == "guard_reworded_at_t" else max(t, policy.reworded_similarity)
            served = [_served_at(r, verified, reworded, mode != "similarity_only") for r in results]
            rates = _rates(results, served)
            rows.append({"threshold": t, "mode": mode, "hit_rate": rates["hit_rate"],
                         "wrong_rate": rates["wrong_rate"]})  # fmt: skip
    return rows


async def run_pairs(
    cache: SemanticCache, pairs: list[tuple[str, str, str, bool]], embedder_batch: int = 64
) -> list[PairResult]:
    """pairs: (group, cached text, new text, same_answer)."""
    texts = [p[1] for p in pairs] + [p[2] for p in pairs]
    vecs = np.concatenate([
        await cache._batcher.embed_many(texts[i : i + embedder_batch])
        for i in range(0, len(texts), embedder_batch)
    ])  # fmt: skip
    n = len(pairs)
    out = []
    for i, (group, a, b, same) in enumerate(pairs):
        tenant = f"eval-{i}"
        await cache.store(StoreCommand(tenant=tenant, text=a, answer=f"answer to {a}", vector=vecs[i]))
        res = await cache.lookup(LookupQuery(tenant=tenant, text=b, vector=vecs[n + i]))
        sim = float(np.dot(vecs[i], vecs[n + i]))
        verdict = guard.check(a, b)
        exact = keys.normalize(a) == keys.normalize(b)
        out.append(PairResult(group, same, sim, res.hit, verdict.ok, verdict.reworded, exact))
        cache.invalidate(tenant=tenant)
    return out


def question_pairs() -> list[tuple[str, str, str, bool]]:
    from fow_cache.data import load_questions

    # Ambiguous pairs count as traps (fow-cache's strict default).
    return [(q.get("ambiguous") or q["category"], q["a"], q["b"], bool(q["same_answer"]) and
             not q.get("ambiguous")) for q in load_questions()]  # fmt: skip


def conversation_pairs(last_message_only: bool) -> list[tuple[str, str, str, bool]]:
    from fow_cache.data import load_conversations

    out = []
    for c in load_conversations():
        if last_message_only:
            a, b = c["a"][-1]["content"], c["b"][-1]["content"]
        else:
            a, b = keys.canonical_text(c["a"]), keys.canonical_text(c["b"])
        out.append((c["subtype"], a, b, bool(c["same_answer"])))
    return out


async def evaluate(
    *, quantized: bool = False, conversations: bool = False, policy: CachePolicy | None = None,
    embedder: Embedder | None = None,
) -> dict[str, Any]:  # fmt: skip
    embedder = embedder or Embedder(quantized=quantized)
    policy = policy or CachePolicy()
    with tempfile.TemporaryDirectory() as tmp:
        cache = SemanticCache(MicroBatcher(embedder.embed), data_dir=Path(tmp), policy=policy)
        await cache.start()
        try:
            results = await run_pairs(cache, question_pairs())
            report: dict[str, Any] = {
                "embedder": embedder.identity,
                "min_similarity": policy.min_similarity,
                "reworded_similarity": policy.reworded_similarity,
                "questions": _rates(results, [r.served for r in results]),
                "guard_refusals_on_should_hit": dict(Counter(
                    "served" if r.guard_ok else "refused" for r in results if r.same_answer)),
                "sweep": sweep(results, policy),
            }  # fmt: skip
            if conversations:
                report["conversations"] = {}
                for name, last in (("whole_conversation", False), ("last_message", True)):
                    conv = await run_pairs(cache, conversation_pairs(last))
                    report["conversations"][name] = _rates(conv, [r.served for r in conv])
        finally:
            cache.close(save=False)
    return report


def format_report(report: dict[str, Any]) -> str:
    q = report["questions"]
    lines = [
        f"fow-cache questions ({q['n_should_hit']} should-hit, {q['n_traps']} traps), embedder {report['embedder']}",
        f"thresholds: verified {report['min_similarity']}, reworded {report['reworded_similarity']}",
        f"  should-hit served        {q['hit_rate']:6.1%}",
    ]
    groups = q["by_group"]
    lines += [f"    {g:<22}{groups[g]:6.1%}" for g in HIT_CATEGORIES if g in groups]
    lines += [f"  traps answered wrongly   {q['wrong_rate']:6.1%}"]
    lines += [f"    {g:<22}{v:6.1%}" for g, v in groups.items() if g not in HIT_CATEGORIES]
    lines += ["", "sweep t: similarity only | guard, both thresholds t | guard, reworded threshold t"]
    by_t: dict[float, dict[str, Any]] = defaultdict(dict)
    for row in report["sweep"]:
        by_t[row["threshold"]][row["mode"]] = row
    for t, modes in by_t.items():
        cells = [f"{m['hit_rate']:6.1%} / {m['wrong_rate']:5.1%}" for m in modes.values()]
        lines.append(f"  {t:4.2f}: " + "  |  ".join(cells))
    for name, rates in report.get("conversations", {}).items():
        lines.append(f"conversations, {name} key: hit {rates['hit_rate']:.1%}, wrong {rates['wrong_rate']:.1%}")
    return "\n".join(lines)


def main(*, quantized: bool, conversations: bool) -> dict[str, Any]:
    return asyncio.run(evaluate(quantized=quantized, conversations=conversations))
