"""``POST /v1/embeddings``: the wire format (billing and compute: ``services/router/embeddings.py``).

The official SDKs ask for ``encoding_format="base64"`` by default (raw
little-endian float32, base64-encoded) and decode it themselves; ``float``
returns plain lists. Vectors are 384-d and unit length.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from rationer.embedding import DIM
from rationer.errors import InvalidArgument
from services.router.embeddings import MODEL_ID
from services.router.http.schema import usd
from services.router.types import EmbeddingsResult

MAX_INPUT_CHARS = 32_768


def parse_inputs(body: Any, max_inputs: int) -> tuple[list[str], str]:
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    raw = body.get("input")
    if isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(t, str) for t in raw):
        texts = list(raw)
    else:
        raise InvalidArgument(
            "'input' must be a non-empty string or a non-empty list of strings (token arrays are not supported)"
        )
    if len(texts) > max_inputs:
        raise InvalidArgument(f"{len(texts)} inputs; at most {max_inputs} per request")
    for i, t in enumerate(texts):
        if not t.strip():
            raise InvalidArgument(f"input[{i}] is empty; every input needs text to embed")
        if len(t) > MAX_INPUT_CHARS:
            raise InvalidArgument(f"input[{i}] has {len(t)} characters; at most {MAX_INPUT_CHARS}")
    fmt = body.get("encoding_format")
    fmt = "float" if fmt is None else fmt
    if not isinstance(fmt, str) or fmt not in ("float", "base64"):
        raise InvalidArgument(f"encoding_format is {json.dumps(fmt)[:40]}; use 'float' or 'base64'")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or dims != DIM):
        raise InvalidArgument(
            f"dimensions is {json.dumps(dims)[:40]}; {MODEL_ID} produces {DIM}-dimensional vectors only"
        )
    return texts, fmt


def embeddings_body(result: EmbeddingsResult, fmt: str, request_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The response body and its headers."""
    headers = {"x-request-id": request_id, "x-rationer-cost-usd": usd(result.cost_nano_usd)}
    if result.settlement_pending:
        headers["x-rationer-settlement"] = "pending"
    data = []
    for i, vec in enumerate(result.vectors):
        value: Any
        if fmt == "base64":
            value = base64.b64encode(np.ascontiguousarray(vec, dtype="<f4").tobytes()).decode()
        else:
            value = [float(x) for x in vec]
        data.append({"object": "embedding", "index": i, "embedding": value})
    usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens}
    return {"object": "list", "data": data, "model": MODEL_ID, "usage": usage}, headers
