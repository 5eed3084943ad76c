"""``POST /v1/embeddings`` on the router's shared MiniLM embedder.

The official SDKs ask for ``encoding_format="base64"`` by default (raw
little-endian float32, base64-encoded) and decode it themselves; ``float``
returns plain lists. Vectors are 384-d and unit length.

Embeddings cost compute, so they are billed like completions, on the
ledger's reserved tier ``embeddings`` (priced per million input tokens):
the inputs are counted with the embedder's own tokenizer, Authorize holds
their exact cost and consumes the rate limits (1 request, the tokens), and
only then does the model run; the commit is journaled like any other. A
budget or rate denial is therefore a 429 before any compute, and every call
is an ``embedding`` event in the chargeback.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from rationer.embedding import DIM
from rationer.errors import AlreadyExists, InvalidArgument
from services.router.auth import resolve_project
from services.router.http_schema import usd
from services.router.ports import LedgerPort, Principal, Reservation
from services.router.settlement import TRANSIENT, Settler, best_effort

MODEL_ID = "all-MiniLM-L6-v2"
MAX_INPUT_CHARS = 32_768
EMBEDDINGS_TIER = "embeddings"  # the ledger's reserved tier (services/ledger/models.py)


class BatchEmbedder(Protocol):
    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]: ...

    def count_tokens(self, text: str) -> int: ...


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


@dataclass(frozen=True)
class Billing:
    """Who pays for an embeddings call, and through what."""

    ledger: LedgerPort
    settler: Settler
    principal: Principal
    request_id: str
    project: str = ""  # the x-rationer-project header


def _count(embedder: BatchEmbedder, texts: list[str]) -> int:
    return sum(embedder.count_tokens(t) for t in texts)


async def _reserve(bill: Billing, tokens: int) -> Reservation:
    res = await bill.ledger.authorize(
        key_id=bill.principal.key_id, tier=EMBEDDINGS_TIER, model=MODEL_ID, prompt_tokens=tokens, max_tokens=0,
        project=resolve_project(bill.principal, bill.project), request_id=bill.request_id,
    )  # fmt: skip
    if res.replayed:  # as for a chat: another call already used this id
        raise AlreadyExists(
            f"request id {bill.request_id!r} was already used by another call; send a unique "
            "x-request-id per request, or none and the gateway makes one"
        )
    return res


async def _settle(bill: Billing, res: Reservation, tokens: int) -> tuple[int, bool]:
    """Commit the call (journaled); (cost, pending)."""
    args = {
        "reservation_id": res.reservation_id, "key_id": bill.principal.key_id, "prompt_tokens": tokens,
        "completion_tokens": 0, "model": MODEL_ID, "tier": EMBEDDINGS_TIER, "latency_ms": 0, "fallbacks": 0,
        "bill_late": True,
    }  # fmt: skip
    try:
        charge = await bill.settler.settle("commit", args)
    except TRANSIENT:
        return 0, True  # journaled: it lands when the ledger is back
    return int(charge.cost_nano_usd), False


async def embeddings(
    embedder: BatchEmbedder, body: Any, bill: Billing, *, max_inputs: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """The response body and its headers; raises before any compute if the ledger says no."""
    texts, fmt = parse_inputs(body, max_inputs)
    tokens = await asyncio.to_thread(_count, embedder, texts)
    res = await _reserve(bill, tokens)
    try:
        # ONNX Runtime releases the GIL: run it off the event loop.
        vectors = await asyncio.to_thread(embedder.embed, texts)
    except BaseException:
        release = bill.ledger.release(reservation_id=res.reservation_id, key_id=bill.principal.key_id,
                                      reason="the embedding failed or the caller went away")  # fmt: skip
        await asyncio.shield(best_effort(release, "release"))  # else it expires on its own
        raise
    cost, pending = await _settle(bill, res, tokens)
    headers = {"x-request-id": bill.request_id, "x-rationer-cost-usd": usd(cost)}
    if pending:
        headers["x-rationer-settlement"] = "pending"
    data = []
    for i, vec in enumerate(vectors):
        value: Any
        if fmt == "base64":
            value = base64.b64encode(np.ascontiguousarray(vec, dtype="<f4").tobytes()).decode()
        else:
            value = [float(x) for x in vec]
        data.append({"object": "embedding", "index": i, "embedding": value})
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": MODEL_ID, "usage": usage}, headers
