"""Continuous batching: several sequences decoded together in one llama.cpp context.

One engine thread owns the context. Each step decodes the next token of every
active sequence in a single ``llama_decode`` call, so the weights are read
once per step for all of them; a new request is admitted between steps (its
prompt is read in chunks, then it joins the batch). Measured on this host,
one batched 2-thread context gives 1.4-1.8x the aggregate tokens per second
of two independent 1-thread contexts once 4 or more streams run at once in
isolation, and 1.06-1.17x through the whole worker, where gRPC shares the
cores (docs/slm_worker.md, "Continuous batching").

To the pool a batched model still looks like N slots: each ``BatchedSlot``
is one sequence id of the shared context, so queueing, backpressure and
cancellation work unchanged. ``BatchedSlot.run`` blocks its lease's thread
until the engine has finished that sequence.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from rationer.errors import Internal
from services.slm_worker.engine import (
    PREFILL_CHUNK,
    RANDOM_SEED,
    GenerationOutcome,
    GenerationRequest,
    Slot,
)
from services.slm_worker.textstream import TokenTextDecoder

log = structlog.get_logger(__name__)


@dataclass
class _Job:
    req: GenerationRequest
    emit: Any
    cancel: threading.Event
    seq: int
    decoder: TokenTextDecoder
    started: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    sampler: Any = None
    pos: int = 0
    last: int = 0
    produced: int = 0
    first: float | None = None
    outcome: GenerationOutcome | None = None
    error: BaseException | None = None


class BatchedContext:
    """One llama.cpp context serving ``n_seqs`` sequences, driven by one thread."""

    def __init__(self, llm: Any, n_seqs: int, n_ctx_per_seq: int, n_threads: int) -> None:
        import llama_cpp

        self._l = llama_cpp
        self._llm = llm  # keeps the weights alive; its own small context is unused
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx_per_seq * n_seqs
        params.n_batch = PREFILL_CHUNK if n_seqs <= PREFILL_CHUNK else n_seqs
        params.n_seq_max = n_seqs
        # One KV cache for all sequences. Per-sequence caches decode
        # sequences at different positions (always the case here) at the
        # speed of separate contexts: measured 80 vs 133 tok/s for 4 streams.
        params.kv_unified = True
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        self._ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if not self._ctx:
            raise Internal("llama.cpp could not create the batched context")
        self._batch = llama_cpp.llama_batch_init(max(PREFILL_CHUNK, n_seqs), 0, n_seqs)
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._pieces = Slot(llm, -1)  # token -> bytes, with its cache
        self._is_eog = llama_cpp.llama_vocab_is_eog
        self._vocab = llm._model.vocab
        self._eog_cache: dict[int, bool] = {}
        self._pending: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._active: dict[int, _Job] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="slm-batched", daemon=True)
        self._thread.start()

    # -- called from the leases' threads ---------------------------------

    def submit(self, seq: int, req: GenerationRequest, emit: Any, cancel: threading.Event) -> GenerationOutcome:
        job = _Job(req, emit, cancel, seq, TokenTextDecoder(req.stop))
        self._pending.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.outcome is not None
        return job.outcome

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pending.put(None)
        self._thread.join()
        self._l.llama_batch_free(self._batch)
        self._l.llama_free(self._ctx)
        self._llm.close()

    # -- the engine thread -------------------------------------------------

    def _loop(self) -> None:
        while True:
            try:
                # Block only when nothing is decoding; otherwise just look.
                job = self._pending.get(block=not self._active)
            except queue.Empty:
                job = None
            else:
                if job is None:
                    break
                self._guarded(job, self._start)
            if self._active:
                self._step()
        for job in list(self._active.values()):
            self._finish(job, "cancelled")

    def _guarded(self, job: _Job, fn: Any) -> None:
        try:
            fn(job)
        except Exception as exc:  # one bad sequence must not stop the engine
            log.exception("batched sequence failed", seq=job.seq)
            self._drop(job)
            job.error = exc
            job.done.set()

    def _fill(self, items: list[tuple[int, int, int, bool]]) -> None:
        b = self._batch
        b.n_tokens = len(items)
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i] = tok, pos, 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits

    def _decode(self) -> None:
        rc = self._l.llama_decode(self._ctx, self._batch)
        if rc != 0:
            raise Internal(f"llama_decode failed with code {rc}")

    def _start(self, job: _Job) -> None:
        """Read the prompt in chunks (checking cancel and deadline), then sample the first token."""
        prompt = job.req.prompt_tokens
        self._l.llama_memory_seq_rm(self._mem, job.seq, -1, -1)
        for i in range(0, len(prompt), PREFILL_CHUNK):
            reason = Slot._should_stop(job.req, -1, job.cancel)
            if reason:
                self._finish(job, reason)
                return
            chunk = prompt[i : i + PREFILL_CHUNK]
            last = i + len(chunk) == len(prompt)
            self._fill([(t, i + k, job.seq, last and k == len(chunk) - 1) for k, t in enumerate(chunk)])
            self._decode()
        job.sampler = self._sampler(job.req)
        job.pos = len(prompt)
        self._active[job.seq] = job
        self._on_token(job, self._l.llama_sampler_sample(job.sampler, self._ctx, -1))

    def _step(self) -> None:
        jobs = list(self._active.values())
        self._fill([(j.last, j.pos, j.seq, True) for j in jobs])
        try:
            self._decode()
        except Exception as exc:
            for j in jobs:
                self._drop(j)
                j.error = exc
                j.done.set()
            return
        # Sample every sequence first, then hand out the text: the emits of
        # one step then run back to back without releasing the GIL, so the
        # event loop is woken once for all of them (mailbox.LoopWaker).
        sampled: list[tuple[_Job, int]] = []
        for i, j in enumerate(jobs):
            j.pos += 1
            self._guarded(j, lambda job, idx=i: sampled.append((job, self._sample(job, idx))))
        for j, tok in sampled:
            self._guarded(j, lambda job, t=tok: self._on_token(job, t))

    def _sample(self, job: _Job, idx: int) -> int:
        return int(self._l.llama_sampler_sample(job.sampler, self._ctx, idx))

    def _eog(self, tok: int) -> bool:
        # Cached: each ctypes call releases the GIL, which would let the loop
        # run between the emits of one step.
        known = self._eog_cache.get(tok)
        if known is None:
            known = self._eog_cache[tok] = bool(self._is_eog(self._vocab, tok))
        return known

    def _on_token(self, job: _Job, tok: int) -> None:
        if self._eog(tok):
            self._finish(job, "stop")
            return
        job.produced += 1
        if job.first is None:
            job.first = time.perf_counter()
        text, stopped = job.decoder.feed(self._pieces.piece(tok))
        if text:
            job.emit(text, job.produced)
        if stopped:
            self._finish(job, "stop", matched_stop=True)
            return
        reason = Slot._should_stop(job.req, job.produced, job.cancel)
        if reason:
            self._finish(job, reason)
            return
        job.last = tok

    def _sampler(self, req: GenerationRequest) -> Any:
        # The same chain llama-cpp-python's Llama.generate uses for the
        # per-slot path: top-k 40, top-p, min-p 0.05, temperature, then a
        # seeded draw (greedy at temperature 0).
        lib = self._l
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if req.temperature <= 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
            return chain
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(req.top_k))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(req.top_p, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(0.05, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(req.temperature))
        seed = RANDOM_SEED if req.seed is None else req.seed
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
        return chain

    def _drop(self, job: _Job) -> None:
        self._active.pop(job.seq, None)
        self._l.llama_memory_seq_rm(self._mem, job.seq, -1, -1)
        if job.sampler is not None:
            self._l.llama_sampler_free(job.sampler)
            job.sampler = None

    def _finish(self, job: _Job, reason: str, *, matched_stop: bool = False) -> None:
        if not matched_stop:
            tail = job.decoder.flush()
            if tail:
                job.emit(tail, job.produced)
        self._drop(job)
        ended = time.perf_counter()
        job.outcome = GenerationOutcome(
            finish_reason=reason,
            prompt_tokens=len(job.req.prompt_tokens),
            completion_tokens=job.produced,
            time_to_first_token_ms=((job.first or ended) - job.req.arrived) * 1000.0,
            generation_ms=(ended - job.started) * 1000.0,
            decode_ms=(ended - job.first) * 1000.0 if job.first is not None else 0.0,
        )
        job.done.set()


class BatchedSlot:
    """One sequence of a shared ``BatchedContext``, shaped like a ``Slot`` for the pool."""

    def __init__(self, shared: BatchedContext, seq: int) -> None:
        self.index = seq
        self._shared = shared

    def run(self, req: GenerationRequest, emit: Any, cancel: threading.Event) -> GenerationOutcome:
        return self._shared.submit(self.index, req, emit, cancel)

    def close(self) -> None:
        self._shared.close()  # idempotent: the first slot closed frees the context
