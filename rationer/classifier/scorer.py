"""Serving-time complexity scorer: P(prompt needs the strong model).

Imports only numpy, onnxruntime and the stdlib-only feature code, so the
router never pulls in scikit-learn or torch. The router passes the prompt
vector it already computed for the cache; ``score_text`` embeds first for
callers that have no vector.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from rationer.classifier.artifact import MODEL_FILE, default_artifact_dir, load_card, proba_to_score
from rationer.classifier.features import model_input
from rationer.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from rationer.embedding import Embedder


class ComplexityScorer:
    """Loads an artifact (default: the one shipped in the package) and scores prompts."""

    def __init__(self, artifact_dir: Path | None = None, *, threads: int = 1, embedder: Embedder | None = None) -> None:
        base = Path(artifact_dir) if artifact_dir is not None else default_artifact_dir()
        self.card: dict[str, Any] = load_card(base)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(base / MODEL_FILE), opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = self.card["onnx"]["probability_output"]
        spec = self.card["input"]
        self.embedding_dim = int(spec["embedding_dim"])
        self.use_text_features = bool(spec["use_text_features"])
        self.label = str(self.card["label"]["name"])
        cal = self.card.get("calibration")
        self._calibration = {"a": float(cal["a"]), "b": float(cal["b"])} if cal else None
        self.threshold = float(self.card["threshold"])
        self.embedder_identity = str(self.card["embedder"])
        self.artifact_dir = base
        # Created on first score_text unless injected: most callers pass vectors.
        self._embedder: Embedder | None = embedder
        self._embedder_lock = threading.Lock()

    @property
    def metadata(self) -> dict[str, Any]:
        return self.card

    def score_batch(self, vectors: npt.NDArray[np.float32], texts: list[str]) -> npt.NDArray[np.float32]:
        """P(needs strong) per (vector, text) pair; ``vectors`` is ``(n, dim)``.

        The ordering comes from the trained label (see the card's ``score``);
        the value is Platt-calibrated on held-out data to P(weak wrong and
        strong right).
        """
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim == 1:
            vecs = vecs.reshape(1, -1)
        if vecs.ndim != 2 or vecs.shape[1] != self.embedding_dim:
            raise InvalidArgument(
                f"expected prompt vectors of shape (n, {self.embedding_dim}), got {vecs.shape}; "
                f"embed with {self.embedder_identity}"
            )
        if len(texts) != vecs.shape[0]:
            raise InvalidArgument(f"got {vecs.shape[0]} vectors but {len(texts)} texts")
        feeds = {self._input: model_input(vecs, texts, self.use_text_features)}
        (probs,) = self._session.run([self._output], feeds)
        out: npt.NDArray[np.float32] = proba_to_score(probs, self.label, self._calibration).astype(np.float32)
        return out

    def score(self, vector: npt.NDArray[np.float32], text: str) -> float:
        return float(self.score_batch(vector, [text])[0])

    def needs_strong(self, vector: npt.NDArray[np.float32], text: str) -> bool:
        return self.score(vector, text) >= self.threshold

    def _get_embedder(self) -> Embedder:
        with self._embedder_lock:
            if self._embedder is None:
                from rationer.embedding import Embedder

                self._embedder = Embedder()
            # Vectors from another embedder would score as noise, silently.
            if self._embedder.identity != self.embedder_identity:
                raise FailedPrecondition(
                    f"embedder {self._embedder.identity} differs from the one this classifier "
                    f"was trained on ({self.embedder_identity}); retrain with `rationer train router`"
                )
            return self._embedder

    def score_text(self, text: str) -> float:
        return self.score(self._get_embedder().embed_one(text), text)

    def score_texts(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return self.score_batch(self._get_embedder().embed(texts), texts)
