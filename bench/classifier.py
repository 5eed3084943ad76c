"""``rationer bench classifier``: scoring latency with and without a precomputed vector.

Serving-only imports (the scorer and the embedder), so it also measures a
fresh install. One thread each, as the router runs them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_PROMPTS = (
    "What is the capital of France?",
    "Summarise this paragraph in one sentence: the meeting moved to Thursday because the room was booked.",
    "Janet has 3 boxes with 12 apples each. She gives away 7 apples and buys twice as many as she has "
    "left. How many apples does she have now?",
    "Write a Python function that returns the n-th Fibonacci number using memoisation.",
    "Which of the following best describes the Heckscher-Ohlin theorem?\nA. Countries export goods that "
    "use their abundant factors intensively\nB. Trade equalises wages\nC. Tariffs raise welfare\n"
    "D. None of the above\nAnswer:",
    "Explain, step by step, why the sum of the first n odd numbers equals n squared, and give a proof by induction.",
    "Translate to German: the invoice is attached, please pay within thirty days.",
    "A 45-year-old man presents with crushing chest pain radiating to the left arm for 30 minutes. "
    "ECG shows ST elevation in leads II, III and aVF. Which artery is most likely occluded?",
)


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    arr = np.asarray(samples_s) * 1e6
    return {"p50_us": float(np.percentile(arr, 50)), "p99_us": float(np.percentile(arr, 99))}


def run_bench(artifact_dir: Path | None = None, iterations: int = 2000) -> dict[str, Any]:
    from rationer.classifier.scorer import ComplexityScorer
    from rationer.embedding import Embedder

    embedder = Embedder()
    scorer = ComplexityScorer(artifact_dir, embedder=embedder)
    prompts = list(SAMPLE_PROMPTS)
    vectors = embedder.embed(prompts)
    for i in range(50):  # warm-up: first ONNX Runtime calls allocate
        scorer.score(vectors[i % len(prompts)], prompts[i % len(prompts)])

    score_only = []
    for i in range(iterations):
        j = i % len(prompts)
        t0 = time.perf_counter()
        scorer.score(vectors[j], prompts[j])
        score_only.append(time.perf_counter() - t0)

    embed_only, embed_and_score = [], []
    rounds = max(10, iterations // 20)
    for i in range(rounds):
        j = i % len(prompts)
        t0 = time.perf_counter()
        vec = embedder.embed_one(prompts[j])
        t1 = time.perf_counter()
        scorer.score(vec, prompts[j])
        t2 = time.perf_counter()
        embed_only.append(t1 - t0)
        embed_and_score.append(t2 - t0)

    batch = np.tile(vectors, (8, 1))
    batch_texts = prompts * 8
    t0 = time.perf_counter()
    for _ in range(max(5, iterations // 100)):
        scorer.score_batch(batch, batch_texts)
    per_row = (time.perf_counter() - t0) / (max(5, iterations // 100) * len(batch_texts))

    s, e, es = _percentiles(score_only), _percentiles(embed_only), _percentiles(embed_and_score)
    return {
        "artifact": str(scorer.artifact_dir),
        "classifier": scorer.card["classifier"]["name"],
        "text_features": scorer.use_text_features,
        "iterations": iterations,
        "score_with_vector": s,
        "score_batch64_per_row_us": per_row * 1e6,
        "embed_only": e,
        "embed_and_score": es,
        # Ratios from this run: how much of a request's classification cost is the classifier.
        "score_share_of_embed_and_score_p50": s["p50_us"] / es["p50_us"],
        "embed_over_score_p50": e["p50_us"] / s["p50_us"],
    }
