"""The shared prompt embedder: all-MiniLM-L6-v2 exported to ONNX, run in ONNX Runtime.

The router embeds each prompt once and passes the vector to the cache and the
classifier. Serving imports only ``onnxruntime`` and ``tokenizers``; the
torch-based export lives in :mod:`rationer.embedding.export`.
"""

from rationer.embedding.onnx_embedder import DIM, Embedder, default_model_dir, model_paths

__all__ = ["DIM", "Embedder", "default_model_dir", "model_paths"]
