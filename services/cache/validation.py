"""Input checks; each failure is a precise, actionable InvalidArgument."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from rationer.embedding import DIM
from rationer.errors import InvalidArgument

MAX_TENANT_LEN = 256


def tenant(value: str) -> str:
    if not value:
        raise InvalidArgument("tenant is empty; the router must set it from the authenticated principal")
    if len(value) > MAX_TENANT_LEN:
        raise InvalidArgument(f"tenant is {len(value)} characters; at most {MAX_TENANT_LEN} allowed")
    return value


def text(value: str, limit_bytes: int, *, what: str = "text") -> str:
    if not value or not value.strip():
        raise InvalidArgument(f"{what} is empty; send the canonical conversation text (keys.canonical_text)")
    size = len(value.encode("utf-8"))
    if size > limit_bytes:
        raise InvalidArgument(
            f"{what} is {size} bytes; the limit is {limit_bytes} bytes (rejected, not truncated: a "
            "truncated key could match a different conversation)"
        )
    return value


def answer(value: str, limit_bytes: int) -> str:
    size = len(value.encode("utf-8"))
    if size > limit_bytes:
        raise InvalidArgument(f"answer is {size} bytes; the limit is {limit_bytes} bytes")
    if not value:
        raise InvalidArgument("answer is empty; there is nothing to cache")
    return value


def vector(value: Sequence[float] | npt.NDArray[np.float32] | None) -> npt.NDArray[np.float32] | None:
    """None/empty -> None (the cache embeds the text); otherwise a unit float32 vector."""
    if value is None or len(value) == 0:
        return None
    arr = np.asarray(value, dtype=np.float32).reshape(-1)
    if arr.shape != (DIM,):
        raise InvalidArgument(
            f"vector has {arr.shape[0]} dimensions; expected {DIM} (all-MiniLM-L6-v2), or send none "
            "and the cache embeds the text"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidArgument("vector contains NaN or infinity")
    norm = float(np.linalg.norm(arr))
    if norm == 0.0 or not math.isfinite(norm):
        raise InvalidArgument("vector is all zeros; it must be an L2-normalised embedding")
    # Tolerate float drift from the client but keep cosine == inner product.
    result: npt.NDArray[np.float32] = (arr / norm).astype(np.float32)
    return result


def ttl(value_s: float, default_s: float, max_s: float) -> float:
    if not math.isfinite(value_s):
        raise InvalidArgument("ttl is not a finite duration")
    if value_s < 0:
        raise InvalidArgument(f"ttl is negative ({value_s:.3f} s); use 0 for the service default")
    if value_s == 0:
        return default_s
    return min(value_s, max_s)


def similarity(value: float) -> float:
    if not math.isfinite(value) or value < 0 or value > 1:
        raise InvalidArgument(f"min_similarity must be in [0, 1] (0 = service default); got {value}")
    return value
