"""``rationer bench cache``: embedding latency, micro-batching gain, index
search latency (flat vs HNSW at 10k/100k) and end-to-end Lookup over gRPC.
Every ratio compares runs made in this same process."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from rationer.embedding import DIM, Embedder
from rationer.embedding.batcher import MicroBatcher
from services.cache.index import IndexConfig, NamespaceIndex

PROMPTS = [
    "How do I reset my password?", "What are your opening hours on Sunday?",
    "Can I change the delivery address of order 48213?", "How much notice do I need to give my landlord?",
    "What's the interest rate on a 2-year fixed mortgage?", "How do I turn off two-factor authentication?",
    "Is the clinic open on bank holidays?", "How do I export my data from HubSpot?",
]  # fmt: skip


def _pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1000.0, q))


def embed_latency(embedder: Embedder, n: int) -> dict[str, float]:
    embedder.embed(PROMPTS[:1])  # warm up
    samples = []
    for i in range(n):
        t = time.perf_counter()
        embedder.embed([f"{PROMPTS[i % len(PROMPTS)]} ({i})"])
        samples.append(time.perf_counter() - t)
    return {"p50_ms": _pct(samples, 50), "p99_ms": _pct(samples, 99)}


async def _throughput(batcher: MicroBatcher, clients: int, per_client: int) -> float:
    async def client(c: int) -> None:
        for i in range(per_client):
            await batcher.embed(f"{PROMPTS[(c + i) % len(PROMPTS)]} [{c}-{i}]")

    t = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return clients * per_client / (time.perf_counter() - t)


async def batching_gain(embedder: Embedder, clients: int, per_client: int) -> dict[str, float]:
    unbatched = MicroBatcher(embedder.embed, window_s=0.0, max_batch=1)
    batched = MicroBatcher(embedder.embed, window_s=0.0015, max_batch=32)
    try:
        without = await _throughput(unbatched, clients, per_client)
        with_ = await _throughput(batched, clients, per_client)
    finally:
        unbatched.close()
        batched.close()
    return {
        "clients": clients,
        "without_batching_per_s": without,
        "with_batching_per_s": with_,
        "ratio": with_ / without,
        "mean_batch": batched.items / max(batched.batches, 1),
    }


def _unit(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    v = rng.standard_normal((n, DIM), dtype=np.float32)
    out: npt.NDArray[np.float32] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def search_latency(sizes: tuple[int, ...], queries: int, hnsw_m: int) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    out: dict[str, Any] = {}
    for size in sizes:
        data = _unit(rng, size)
        # Queries near stored points, like a paraphrase near its cached question.
        q = data[:queries] + 0.02 * rng.standard_normal((queries, DIM), dtype=np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        for kind in ("flat", "hnsw"):
            index = NamespaceIndex(IndexConfig(kind=kind, hnsw_m=hnsw_m))
            t = time.perf_counter()
            index.add(np.arange(size, dtype=np.int64), data)
            build_s = time.perf_counter() - t
            samples, found = [], 0
            for i in range(queries):
                t = time.perf_counter()
                res = index.search(q[i : i + 1], 4)
                samples.append(time.perf_counter() - t)
                found += bool(res[0]) and res[0][0][0] == i
            out[f"{kind}_{size}"] = {"p50_ms": _pct(samples, 50), "p99_ms": _pct(samples, 99),
                                     "recall_at_1": found / queries, "build_s": build_s,
                                     **_batched_search_gain(index, q[:32])}  # fmt: skip
    return out


def _batched_search_gain(index: NamespaceIndex, q: npt.NDArray[np.float32], rounds: int = 5) -> dict[str, float]:
    """Would batching concurrent lookups' searches pay? 32 queries one by one vs as one batch."""
    t = time.perf_counter()
    for _ in range(rounds):
        for i in range(len(q)):
            index.search(q[i : i + 1], 4)
    single = (time.perf_counter() - t) / rounds
    t = time.perf_counter()
    for _ in range(rounds):
        index.search(q, 4)
    batched = (time.perf_counter() - t) / rounds
    return {"search32_single_ms": single * 1000, "search32_batched_ms": batched * 1000,
            "search_batching_gain": single / batched}  # fmt: skip


async def grpc_lookup(entries: int, lookups: int) -> dict[str, float]:
    from testsupport.cache import running_cache, shared_embedder

    embedder = shared_embedder()
    texts = [f"{PROMPTS[i % len(PROMPTS)]} variant {i}" for i in range(entries)]
    vectors = embedder.embed(texts)
    async with running_cache() as running, running.client() as client:
        for text, vec in zip(texts, vectors, strict=True):
            await client.store("bench", text, f"answer {text}", vec)
        with_vec, text_only = [], []
        for i in range(lookups):
            t = time.perf_counter()
            await client.lookup("bench", texts[i % entries] + " please", vectors[i % entries])
            with_vec.append(time.perf_counter() - t)
        for i in range(min(lookups, 100)):
            t = time.perf_counter()
            await client.lookup("bench", f"{texts[i % entries]} thanks {i}")
            text_only.append(time.perf_counter() - t)
    return {"with_vector_p50_ms": _pct(with_vec, 50), "with_vector_p99_ms": _pct(with_vec, 99),
            "text_only_p50_ms": _pct(text_only, 50), "entries": entries}  # fmt: skip


def verify_cost(pairs: list[tuple[str, str]], cos: npt.NDArray[np.float32]) -> dict[str, float]:
    """Per-candidate cost in process: today's guard vs the verifier (features,
    guard included, plus the ONNX call), text features cold as for a new prompt."""
    from services.cache import guard
    from services.cache.guard_text import features, same_word, stem
    from services.cache.verifier import Verifier

    verifier = Verifier()
    out: dict[str, float] = {}
    for name, fn in (("guard", lambda a, b, c: guard.check(a, b)), ("verifier", verifier.score)):
        samples = []
        for (a, b), c in zip(pairs, cos, strict=True):
            for cached in (features, same_word, stem):
                cached.cache_clear()
            t = time.perf_counter()
            fn(a, b, float(c))
            samples.append(time.perf_counter() - t)
        out[f"{name}_p50_ms"], out[f"{name}_p99_ms"] = _pct(samples, 50), _pct(samples, 99)
    return out


async def verifier_overhead(rounds: int) -> dict[str, Any]:
    """Semantic-hit Lookup over gRPC, verifier vs today's guard, interleaved in
    one run: fow-cache should-hit pairs that both configurations serve."""
    from fow_cache.data import load_questions

    from testsupport.cache import running_cache, shared_embedder

    qs = [q for q in load_questions() if q["same_answer"] and q["category"] in ("paraphrase", "near_repeat")]
    vecs = shared_embedder().embed([q["a"] for q in qs] + [q["b"] for q in qs])
    n = len(qs)
    async with (
        running_cache(verifier=True) as rv, running_cache(verifier=False) as rg,
        rv.client() as cv, rg.client() as cg,
    ):  # fmt: skip
        for i, q in enumerate(qs):
            for c in (cv, cg):
                await c.store(f"bench-{i}", q["a"], "answer", vecs[i])
        both = []
        for i, q in enumerate(qs):
            hits = [await c.lookup(f"bench-{i}", q["b"], vecs[n + i]) for c in (cv, cg)]
            if all(h.hit and h.match_kind == "semantic" for h in hits):
                both.append(i)
        times: dict[str, list[float]] = {"verifier": [], "guard": []}
        for _ in range(rounds):
            for i in both:
                for name, c in (("verifier", cv), ("guard", cg)):
                    t = time.perf_counter()
                    await c.lookup(f"bench-{i}", qs[i]["b"], vecs[n + i])
                    times[name].append(time.perf_counter() - t)
    pairs = [(q["a"], q["b"]) for q in qs]
    cos = np.sum(vecs[:n] * vecs[n:], axis=1)
    return {"pairs": len(both), **{f"{k}_p50_ms": _pct(v, 50) for k, v in times.items()},
            **{f"{k}_p99_ms": _pct(v, 99) for k, v in times.items()},
            "p50_overhead_ms": _pct(times["verifier"], 50) - _pct(times["guard"], 50),
            "in_process": verify_cost(pairs, cos)}  # fmt: skip


async def rebuild_stall(entries: int, hnsw_m: int = 32) -> dict[str, Any]:
    """Another tenant's Lookup latency while one namespace crosses into HNSW
    at ``entries`` and rebuilds in the background (in process, vectors given)."""
    from services.cache.cache import CachePolicy, SemanticCache
    from services.cache.faiss_backend import EmbeddedFaissBackend
    from services.cache.types import LookupQuery, StoreCommand
    from testsupport.cache import shared_embedder

    rng = np.random.default_rng(3)
    backend = EmbeddedFaissBackend(None, IndexConfig(kind="auto", hnsw_m=hnsw_m, hnsw_min_entries=entries))
    cache = SemanticCache(MicroBatcher(shared_embedder().embed), policy=CachePolicy(guard=False), backend=backend)
    await cache.start()
    try:
        probe = _unit(rng, 1)[0]
        await cache.store(StoreCommand("probe", "probe", "answer", probe))
        # The big namespace's index is filled directly: the probe tenant's
        # lookups never read its rows, and 100k Stores would take far longer
        # than the rebuild being measured.
        big = NamespaceIndex(IndexConfig(kind="auto", hnsw_m=hnsw_m, hnsw_min_entries=entries))
        big.add(np.arange(entries - 1, dtype=np.int64), _unit(rng, entries - 1))
        backend._indexes[("big", "")] = big
        baseline = [await _timed_lookup(cache, LookupQuery("probe", "x", probe)) for _ in range(200)]
        t0 = time.perf_counter()
        big.add(np.array([entries - 1], dtype=np.int64), _unit(rng, 1))  # crosses the HNSW threshold
        backend._rebuilder.schedule(big)  # what Store does after adding
        during: list[float] = []
        done = asyncio.ensure_future(cache.wait_for_rebuilds())
        while not done.done():
            during.append(await _timed_lookup(cache, LookupQuery("probe", "x", probe)))
            await asyncio.sleep(0.002)
        build_s = time.perf_counter() - t0
    finally:
        cache.close(save=False)
    return {"entries": entries, "rebuild_s": build_s, "lookups_during": len(during),
            "idle_p50_ms": _pct(baseline, 50), "idle_p99_ms": _pct(baseline, 99),
            "during_p50_ms": _pct(during, 50), "during_p99_ms": _pct(during, 99),
            "during_max_ms": max(during) * 1000 if during else 0.0}  # fmt: skip


async def _timed_lookup(cache: Any, q: Any) -> float:
    t = time.perf_counter()
    await cache.lookup(q)
    return time.perf_counter() - t


def run(*, quick: bool = False, hnsw_m: int = 32) -> dict[str, Any]:
    fp32 = Embedder()
    int8 = Embedder(quantized=True)
    n = 50 if quick else 200
    report: dict[str, Any] = {
        "embedding_batch1": {"fp32": embed_latency(fp32, n), "int8": embed_latency(int8, n)},
    }
    report["embedding_batch1"]["int8_speedup"] = (
        report["embedding_batch1"]["fp32"]["p50_ms"] / report["embedding_batch1"]["int8"]["p50_ms"]
    )
    report["micro_batching"] = asyncio.run(batching_gain(fp32, 32, 4 if quick else 12))
    sizes = (10_000,) if quick else (10_000, 100_000)
    report["search"] = search_latency(sizes, 100 if quick else 300, hnsw_m)
    report["grpc_lookup"] = asyncio.run(grpc_lookup(200 if quick else 1000, 100 if quick else 500))
    report["verifier_hit_path"] = asyncio.run(verifier_overhead(2 if quick else 5))
    report["rebuild"] = asyncio.run(rebuild_stall(20_000 if quick else 100_000, hnsw_m))
    return report


def format_report(r: dict[str, Any]) -> str:
    e, b = r["embedding_batch1"], r["micro_batching"]
    lines = [
        f"embedding batch 1: fp32 p50 {e['fp32']['p50_ms']:.2f} ms p99 {e['fp32']['p99_ms']:.2f} ms; "
        f"int8 p50 {e['int8']['p50_ms']:.2f} ms p99 {e['int8']['p99_ms']:.2f} ms "
        f"(int8 {e['int8_speedup']:.1f}x faster)",
        f"embedding throughput, {b['clients']} concurrent clients: {b['without_batching_per_s']:.0f}/s "
        f"unbatched vs {b['with_batching_per_s']:.0f}/s micro-batched = {b['ratio']:.2f}x "
        f"(mean batch {b['mean_batch']:.1f})",
    ]
    for name, s in r["search"].items():
        lines.append(f"search {name}: p50 {s['p50_ms']:.3f} ms p99 {s['p99_ms']:.3f} ms "
                     f"recall@1 {s['recall_at_1']:.2f} (build {s['build_s']:.1f} s); 32 queries "
                     f"{s['search32_single_ms']:.2f} ms one by one vs {s['search32_batched_ms']:.2f} ms "
                     f"batched = {s['search_batching_gain']:.2f}x")  # fmt: skip
    g = r["grpc_lookup"]
    lines.append(f"gRPC Lookup ({g['entries']} entries): p50 {g['with_vector_p50_ms']:.2f} ms with vector, "
                 f"p99 {g['with_vector_p99_ms']:.2f} ms; p50 {g['text_only_p50_ms']:.2f} ms text only "
                 "(cache embeds)")  # fmt: skip
    v = r["verifier_hit_path"]
    ip = v["in_process"]
    lines.append(f"semantic-hit Lookup, {v['pairs']} fow-cache pairs: verifier p50 {v['verifier_p50_ms']:.2f} ms "
                 f"p99 {v['verifier_p99_ms']:.2f} ms vs guard p50 {v['guard_p50_ms']:.2f} ms p99 "
                 f"{v['guard_p99_ms']:.2f} ms = {v['p50_overhead_ms']:+.2f} ms p50; per candidate in process "
                 f"verifier {ip['verifier_p50_ms']:.3f} ms vs guard {ip['guard_p50_ms']:.3f} ms p50")  # fmt: skip
    rb = r["rebuild"]
    lines.append(f"another tenant's Lookup while {rb['entries']} entries rebuild to HNSW ({rb['rebuild_s']:.1f} s, "
                 f"{rb['lookups_during']} lookups): p50 {rb['during_p50_ms']:.2f} ms p99 {rb['during_p99_ms']:.2f} ms "
                 f"max {rb['during_max_ms']:.1f} ms (idle p50 {rb['idle_p50_ms']:.2f} ms p99 "
                 f"{rb['idle_p99_ms']:.2f} ms)")  # fmt: skip
    return "\n".join(lines)
