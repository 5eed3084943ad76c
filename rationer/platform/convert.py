"""Conversions between the shared proto messages and plain values.

Every service and client builds ``GenerationParams`` and maps finish reasons
the same way; this is the one place that does it.
"""

from __future__ import annotations

from collections.abc import Sequence

from rationer.api.common.v1 import common_pb2

# Plain name -> proto. "deadline" is the worker's name for a generation cut
# short by the caller's deadline: to the caller it is a cancellation.
FINISH_TO_PROTO: dict[str, common_pb2.FinishReason] = {
    "stop": common_pb2.FINISH_REASON_STOP,
    "length": common_pb2.FINISH_REASON_LENGTH,
    "cancelled": common_pb2.FINISH_REASON_CANCELLED,
    "deadline": common_pb2.FINISH_REASON_CANCELLED,
    "error": common_pb2.FINISH_REASON_ERROR,
}
FINISH_FROM_PROTO: dict[int, str] = {
    common_pb2.FINISH_REASON_STOP: "stop",
    common_pb2.FINISH_REASON_LENGTH: "length",
    common_pb2.FINISH_REASON_CANCELLED: "cancelled",
    common_pb2.FINISH_REASON_ERROR: "error",
}


def generation_params(
    max_tokens: int,
    stop: Sequence[str] = (),
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    top_k: int | None = None,
) -> common_pb2.GenerationParams:
    """A ``GenerationParams`` with the optional fields set only when given."""
    params = common_pb2.GenerationParams(max_tokens=max_tokens, stop=list(stop))
    if temperature is not None:
        params.temperature = temperature
    if top_p is not None:
        params.top_p = top_p
    if seed is not None:
        params.seed = seed
    if top_k is not None:
        params.top_k = top_k
    return params
