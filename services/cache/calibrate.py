"""``rationer calibrate cache --pairs FILE``: the verifier threshold that keeps
false hits on an operator's own labelled pairs within the error bound.

Each pair (JSONL ``a``, ``b``, ``same_answer``) is scored as the cache would
score it (exact repeats always served, candidates under the similarity floor
never); the lowest threshold whose false-hit rate on the operator's traps is
within ``max_false_hit_rate`` is written to ``[cache] verifier_threshold``
(with the bound) in the gateway config, leaving every other line alone.
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from pathlib import Path
from typing import Any

from rationer.classifier.calibrate import write_threshold
from rationer.embedding import Embedder
from rationer.errors import InvalidArgument
from services.cache import pairsets
from services.cache.verifier import Verifier, check_bound, operating_point
from services.cache.verifier_train import curve, score_pairs, served_scores

SECTION = "cache"
DEFAULT_BOUND = 0.01


def configured_bound(config: Path) -> float:
    if not config.is_file():
        return DEFAULT_BOUND
    try:
        value = tomllib.loads(config.read_text(encoding="utf-8")).get(SECTION, {}).get("max_false_hit_rate")
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"config {config} is not valid TOML: {exc}") from exc
    return float(value) if isinstance(value, int | float) else DEFAULT_BOUND


def calibrate_pairs(pairs: list[pairsets.Pair], bound: float, embedder: Embedder,
                    verifier: Verifier) -> dict[str, Any]:  # fmt: skip
    check_bound(bound)
    traps = sum(not p.same_answer for p in pairs)
    hits = len(pairs) - traps
    needed = math.ceil(1.0 / bound)
    if traps < needed or hits == 0:
        raise InvalidArgument(
            f"{len(pairs)} pairs hold {traps} traps (same_answer false) and {hits} should-hit pairs; "
            f"a false-hit rate of {bound:g} can only be measured on at least {needed} traps and one "
            "should-hit pair: label more pairs or raise --max-false-hit-rate"
        )
    s = score_pairs(pairs, embedder)
    scores = served_scores(verifier.probabilities(s.x), s, verifier.card.get("candidate_floor", 0.5), verifier.lexical)
    c = curve(scores, s, points=1000)
    point = operating_point(c, bound)
    shipped = operating_point(verifier.card["calibration"], bound)
    at_shipped = scores >= shipped.threshold
    y = s.y
    return {
        "pairs": len(pairs), "traps": traps, "should_hit": hits, "max_false_hit_rate": bound,
        "verifier_threshold": point.threshold, "recall": point.recall.get("operator", 0.0),
        "false_hit": point.false_hit.get("operator", 0.0),
        "shipped_threshold": shipped.threshold,
        "shipped_recall": float(at_shipped[y].mean()), "shipped_false_hit": float(at_shipped[~y].mean()),
    }  # fmt: skip


def run(pairs_path: Path, config: Path, bound: float | None, *, write: bool = True,
        embedder: Embedder | None = None) -> dict[str, Any]:  # fmt: skip
    pairs = pairsets.operator_pairs(pairs_path)
    bound = bound if bound is not None else configured_bound(config)
    result = calibrate_pairs(pairs, bound, embedder or Embedder(), Verifier(max_false_hit_rate=bound))
    result["config"] = str(config)
    result["written"] = write
    if write:
        note = (f"rationer calibrate cache: {result['pairs']} pairs, recall {result['recall']:.1%} at "
                f"false hits {result['false_hit']:.2%}, {dt.date.today().isoformat()}")  # fmt: skip
        write_threshold(config, result["verifier_threshold"], note, section=SECTION, key="verifier_threshold",
                        also={"max_false_hit_rate": bound})  # fmt: skip
    return result


def format_result(r: dict[str, Any]) -> str:
    never = r["verifier_threshold"] >= 1.0
    lines = [
        f"{r['pairs']} pairs ({r['should_hit']} should-hit, {r['traps']} traps), bound {r['max_false_hit_rate']:g}",
        f"  verifier_threshold {r['verifier_threshold']:.4f}: recall {r['recall']:.1%}, false hits {r['false_hit']:.2%}"
        + ("  (no threshold keeps false hits within the bound: semantic hits are off)" if never else ""),
        f"  the shipped calibration ({r['shipped_threshold']:.4f}) on these pairs: recall {r['shipped_recall']:.1%}, "
        f"false hits {r['shipped_false_hit']:.2%}",
        f"  {'wrote' if r['written'] else 'would write'} [cache] verifier_threshold and max_false_hit_rate to "
        f"{r['config']}",
    ]
    return "\n".join(lines)
