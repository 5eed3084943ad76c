"""``rationer eval cache``: every labelled pair set through the real cache.

For each pair a fresh tenant stores ``a`` and looks up ``b`` through
:class:`SemanticCache` (real ONNX embedder, real FAISS, SQLite), once with
the verifier at the operator's bound and once with today's lexical guard,
so the table is what the service would do. The sweep re-scores the same
pairs offline at other bounds (the cache's own answers must agree with the
offline scores; ``mismatches`` says if they do not). Plain-cosine
baselines at 0.90 and 0.95 and "cosine at the verifier's false-hit rate"
come from the same embeddings.

Data: the test splits only: fow-cache test (half of its 600 questions,
``pairsets.fow_split``; the guard's word lists were written reading all
600, so its figures there are still tuned-on), MSRP test and SICK test
(``../shared/data/paraphrase``), and fow-cache's 240 conversation pairs
(never fitted or calibrated on).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rationer.embedding import Embedder
from rationer.embedding.batcher import MicroBatcher
from services.cache import pairsets
from services.cache.cache import CachePolicy, SemanticCache
from services.cache.types import LookupQuery, StoreCommand
from services.cache.verifier import Verifier, operating_point
from services.cache.verifier_train import TEST_SETS, Scored, score_pairs, served_scores

SWEEP_BOUNDS = (0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)
COSINE_BASELINES = (0.90, 0.95)
TARGETS = (  # (data set, metric, comparison, value): the targets at the default bound
    ("msrp", "false_hit:msrp", "<=", 0.01),
    ("sick", "false_hit:sick/contradiction", "<=", 0.005),
    ("sick", "false_hit:sick/neutral", "<=", 0.02),
    ("fow-cache", "recall", ">=", 0.60),
    ("fow-cache", "false_hit:fow-cache", "<=", 0.01),
    ("msrp", "recall_vs_cosine", ">=", 0.0),
    ("sick", "recall_vs_cosine", ">=", 0.0),
)


def rates(served: npt.NDArray[np.bool_], s: Scored) -> dict[str, Any]:
    y, groups = s.y, np.array(s.trap_group())
    fh = {g: float(served[groups == g].mean()) for g in sorted(set(groups) - {""})}
    return {"recall": float(served[y].mean()) if y.any() else 0.0, "false_hit": fh,
            "false_hit_all": float(served[~y].mean()) if (~y).any() else 0.0}  # fmt: skip


def cosine_recall_at(cos: npt.NDArray[np.float32], s: Scored, fh: float) -> float:
    """Recall of a plain cosine threshold that serves at most ``fh`` of the traps."""
    c = np.where(s.exact, 2.0, cos.astype(np.float64))
    y = s.y
    neg = np.sort(c[~y])[::-1]
    k = int(np.floor(fh * len(neg) + 1e-9))
    t = neg[k] + 1e-9 if k < len(neg) else -np.inf
    return float(((c >= t) & y).sum() / max(int(y.sum()), 1))


async def through_cache(cache: SemanticCache, s: Scored, vecs: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """Store ``a`` in a fresh tenant, look up ``b``: was it served?"""
    n = len(s.pairs)
    out = np.zeros(n, dtype=bool)
    for i, p in enumerate(s.pairs):
        tenant = f"eval-{i}"
        await cache.store(StoreCommand(tenant=tenant, text=p.a, answer=f"answer to {p.a}", vector=vecs[i]))
        res = await cache.lookup(LookupQuery(tenant=tenant, text=p.b, vector=vecs[n + i]))
        out[i] = res.hit
        await cache.invalidate(tenant=tenant)
    return out


def _vectors(s: Scored, embedder: Embedder, cache_dir: Path | None) -> npt.NDArray[np.float32]:
    from rationer.classifier.embed_cache import cached_embed

    return cached_embed(embedder, [p.a for p in s.pairs] + [p.b for p in s.pairs], cache_dir=cache_dir)


async def evaluate_set(s: Scored, vecs: npt.NDArray[np.float32], verifier: Verifier, embedder: Embedder,
                       policy: CachePolicy) -> dict[str, Any]:  # fmt: skip
    batcher = MicroBatcher(embedder.embed)
    with tempfile.TemporaryDirectory() as tmp:
        served: dict[str, npt.NDArray[np.bool_]] = {}
        for name, ver in (("verifier", verifier), ("guard", None)):
            cache = SemanticCache(batcher, data_dir=Path(tmp) / name, policy=policy, verifier=ver)
            await cache.start()
            try:
                served[name] = await through_cache(cache, s, vecs)
            finally:
                cache.close(save=False)
    scores = served_scores(verifier.probabilities(s.x), s, policy.min_similarity, verifier.lexical)
    offline = scores >= verifier.threshold if verifier.threshold < 1.0 else s.exact
    out: dict[str, Any] = {
        "n_should_hit": int(s.y.sum()),
        "n_traps": {g: int(np.sum(np.array(s.trap_group()) == g)) for g in sorted(set(s.trap_group()) - {""})},
        "verifier": rates(served["verifier"], s),
        "guard": rates(served["guard"], s),
        "mismatches": int(np.sum(offline != served["verifier"])),
    }
    for t in COSINE_BASELINES:
        out[f"cosine_{t:.2f}"] = rates((s.cos >= t) | s.exact, s)
    out["cosine_at_same_false_hit"] = cosine_recall_at(s.cos, s, out["verifier"]["false_hit_all"])
    sweep = []
    for bound in SWEEP_BOUNDS:
        point = operating_point(verifier.card["calibration"], bound)
        at = (scores >= point.threshold) if point.threshold < 1.0 else s.exact
        r = rates(at, s)
        sweep.append({"bound": bound, "threshold": point.threshold, **r,
                      "cosine_same_false_hit": cosine_recall_at(s.cos, s, r["false_hit_all"])})  # fmt: skip
    out["sweep"] = sweep
    return out


def check_targets(sets: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for ds, metric, op, target in TARGETS:
        if ds not in sets:
            continue
        v = sets[ds]["verifier"]
        if metric == "recall":
            value = v["recall"]
        elif metric == "recall_vs_cosine":
            value = v["recall"] - sets[ds]["cosine_at_same_false_hit"]
        else:
            value = v["false_hit"][metric.split(":", 1)[1]]
        met = value <= target + 1e-12 if op == "<=" else value >= target - 1e-12
        # How far from the target, in the metric's own unit (0 when met).
        miss_by = 0.0 if met else abs(value - target)
        out.append({"data": ds, "metric": metric, "value": value, "target": f"{op} {target}", "met": bool(met),
                    "miss_by": miss_by})  # fmt: skip
    return out


async def conversations(embedder: Embedder, verifier: Verifier, policy: CachePolicy,
                        cache_dir: Path | None) -> dict[str, Any]:  # fmt: skip
    out = {}
    for name, last in (("whole_conversation", False), ("last_message", True)):
        s = score_pairs(pairsets.fow_conversations(last_message=last), embedder, cache_dir)
        res = await evaluate_set(s, _vectors(s, embedder, cache_dir), verifier, embedder, policy)
        out[name] = {k: res[k] for k in ("n_should_hit", "n_traps", "verifier", "guard", "cosine_0.90",
                                         "cosine_0.95", "cosine_at_same_false_hit", "mismatches")}  # fmt: skip
    return out


async def evaluate(*, embedder: Embedder | None = None, data_dir: Path | None = None,
                   max_false_hit_rate: float = 0.01, threshold: float | None = None,
                   artifact_dir: Path | None = None, sets: tuple[str, ...] = pairsets.DATASETS,
                   with_conversations: bool = False, cache_dir: Path | None = None) -> dict[str, Any]:  # fmt: skip
    embedder = embedder or Embedder()
    verifier = Verifier(artifact_dir, max_false_hit_rate=max_false_hit_rate, threshold=threshold)
    policy = CachePolicy()
    report: dict[str, Any] = {
        "embedder": embedder.identity, "max_false_hit_rate": max_false_hit_rate,
        "threshold": verifier.threshold, "calibration_point": verifier.point.__dict__, "sets": {},
    }  # fmt: skip
    for ds, split in TEST_SETS:
        if ds not in sets:
            continue
        s = score_pairs(pairsets.load(ds, split, data_dir), embedder, cache_dir)
        res = await evaluate_set(s, _vectors(s, embedder, cache_dir), verifier, embedder, policy)
        report["sets"][ds] = {"split": split, **res}
    report["targets"] = check_targets(report["sets"])
    if with_conversations:
        report["conversations"] = await conversations(embedder, verifier, policy, cache_dir)
    return report
