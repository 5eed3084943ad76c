"""Loading one model from its settings entry: resolve, load, warm (``wiring.build_deps`` does them all).

Loading happens before the server reports SERVING; any missing or corrupt
model file aborts the whole start (no half-serving worker).
"""

from __future__ import annotations

import threading
from typing import Any

import structlog

from services.slm_worker.engine import GenerationRequest, Slot, load_llama
from services.slm_worker.pool import SlotPool
from services.slm_worker.prompts import Message
from services.slm_worker.registry import quantization_name, resolve_model_path
from services.slm_worker.settings import ModelEntry
from services.slm_worker.vocab import PromptTokenizer
from services.slm_worker.worker import LoadedModel

log = structlog.get_logger(__name__)


def gpu_offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def load_model(entry: ModelEntry, cache_dir: str) -> LoadedModel:
    path = resolve_model_path(entry, cache_dir)
    if entry.n_gpu_layers != 0 and not gpu_offload_supported():
        # Same code path either way; only the llama.cpp build differs.
        log.warning(
            "n_gpu_layers is set but this llama-cpp-python build has no GPU backend; running on CPU "
            "(rebuild with CMAKE_ARGS=-DGGML_CUDA=on, see docs/slm_worker.md)",
            model=entry.name,
        )
    tokenizer = PromptTokenizer.from_llama(load_llama(path, entry, vocab_only=True), entry.chat_format)
    slots: list[Any]
    if entry.batched:
        from services.slm_worker.batched import BatchedContext, BatchedSlot

        shared = BatchedContext(load_llama(path, entry), entry.slots, entry.n_ctx, entry.n_threads)
        slots = [BatchedSlot(shared, i) for i in range(entry.slots)]
    else:
        slots = [Slot(load_llama(path, entry), i) for i in range(entry.slots)]
    pool = SlotPool(entry.name, slots, entry.queue_capacity)
    log.info("model loaded", model=entry.name, tier=entry.tier, path=str(path), slots=entry.slots)
    on_gpu = entry.n_gpu_layers != 0 and gpu_offload_supported()
    return LoadedModel(entry, tokenizer, pool, quantization_name(tokenizer.metadata), "gpu" if on_gpu else "cpu")


async def warm(model: LoadedModel) -> None:
    """Generate one token on every slot so the first real call pays no setup."""
    tokens, _ = model.tokenize([Message("user", "Hi")])

    def one_token(slot: Slot) -> None:
        slot.run(GenerationRequest(prompt_tokens=tokens, max_tokens=1, seed=0), lambda _t, _n: None, threading.Event())

    await model.pool.run_once(one_token)
