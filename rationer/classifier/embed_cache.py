"""Batch embedding with an on-disk cache, so retraining and re-evaluating are fast.

The cache key hashes the embedder's identity (model file digest) together with
every text in order, so a different model or a changed dataset can never be
served stale vectors.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import structlog

log = structlog.get_logger(__name__)

BATCH = 64


class SupportsEmbed(Protocol):
    identity: str

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]: ...


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "rationer" / "embeddings"


def cache_key(identity: str, texts: list[str]) -> str:
    h = hashlib.sha256(identity.encode())
    for t in texts:
        h.update(b"\x00")
        h.update(t.encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32]


def embed_batched(
    embedder: SupportsEmbed,
    texts: list[str],
    progress: Callable[[int, int], None] | None = None,
) -> npt.NDArray[np.float32]:
    """Embed in length-sorted batches: similar lengths pad little, which
    roughly halves the cost on prompts as uneven as MMLU's."""
    out = np.zeros((len(texts), 384), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        vecs = embedder.embed([texts[i] for i in idx])
        if start == 0 and vecs.shape[1] != out.shape[1]:
            out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
        out[idx] = vecs
        if progress is not None:
            progress(min(start + BATCH, len(order)), len(order))
    return out


def cached_embed(
    embedder: SupportsEmbed,
    texts: list[str],
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> npt.NDArray[np.float32]:
    """Vectors for ``texts``, read from ``<cache_dir>/<key>.npy`` when present."""
    base = cache_dir if cache_dir is not None else default_cache_dir()
    path = base / f"{cache_key(embedder.identity, texts)}.npy"
    if path.exists():
        vecs: npt.NDArray[np.float32] = np.load(path)
        if vecs.shape[0] == len(texts):
            log.info("embeddings cache hit", path=str(path), n=len(texts))
            return vecs
    log.info("embedding texts", n=len(texts), cache=str(path))
    vecs = embed_batched(embedder, texts, progress)
    base.mkdir(parents=True, exist_ok=True)
    # Write then rename so a killed run never leaves a truncated cache file.
    fd, tmp = tempfile.mkstemp(dir=base, suffix=".npy.tmp")
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, vecs)
    os.replace(tmp, path)
    return vecs
