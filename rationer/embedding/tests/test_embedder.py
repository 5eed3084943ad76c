"""The serving embedder (ONNX Runtime) matches the model it was exported from."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rationer.embedding import DIM, Embedder

TEXTS = [
    "How do I reset my password?",
    "Summarise the quarterly report in three bullet points.",
    "Is the museum open on Sunday?",
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def test_onnx_matches_the_torch_model_it_was_exported_from(embedder: Embedder) -> None:
    torch = pytest.importorskip("torch")  # the train extra; CI installs it
    transformers = pytest.importorskip("transformers")
    from rationer.embedding.export import _source_dir

    source = str(_source_dir())
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    model = transformers.AutoModel.from_pretrained(source).eval()
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    reference = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    served = embedder.embed(TEXTS)
    assert served.shape == (len(TEXTS), DIM)
    cosines = (served * reference).sum(axis=1)
    assert cosines.min() > 0.9999, cosines


def test_serving_never_imports_torch() -> None:
    code = (
        "import sys; from rationer.embedding import Embedder; Embedder().embed_one('hi'); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch on the serving path'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_long_text_is_truncated_not_rejected(embedder: Embedder) -> None:
    long = "the quarterly numbers rose and fell again " * 3000
    v = embedder.embed_one(long)
    assert v.shape == (DIM,) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-4
    # Only the first 256 tokens count: a different tail changes nothing.
    assert np.allclose(v, embedder.embed_one(long + " completely different ending"), atol=1e-6)
