"""Cheap text features appended to the prompt embedding.

Serving computes these on every request, so this module uses only the
standard library and numpy (no sklearn). Counts are log-scaled here; the
exported model standardises them itself (a scaler inside the ONNX graph).
"""

from __future__ import annotations

import math
import re

import numpy as np
import numpy.typing as npt

FEATURE_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "log_lines",
    "digit_frac",
    "log_numbers",
    "log_math_ops",
    "code_markers",
    "log_question_words",
    "log_turns",
)

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# Operators between operands, not hyphens in words: require a digit, space or
# bracket on at least one side.
_MATH_OP = re.compile(r"(?<=[\d\s)])[-+*/=^%<>×÷](?=[\d\s(])|\\frac|\\sqrt|\\sum|\\int")
_CODE = re.compile(r"```|\bdef\s+\w+\(|\bclass\s+\w+|#include|\bfunction\s*\(|;\s*$|=>|\breturn\b", re.M)
_QUESTION = re.compile(
    r"\b(?:what|why|how|which|who|whom|when|where|calculate|compute|find|prove|explain|derive|solve)\b",
    re.I,
)
# Chat transcripts flattened to text mark turns with role prefixes.
_TURN = re.compile(r"^(?:user|assistant|human|ai|system)\s*:", re.I | re.M)


def text_features(text: str) -> list[float]:
    """The ``FEATURE_NAMES`` values for one prompt."""
    chars = len(text)
    digits = sum(map(str.isdigit, text))
    return [
        math.log1p(chars),
        math.log1p(len(text.split())),
        math.log1p(text.count("\n")),
        digits / chars if chars else 0.0,
        math.log1p(len(_NUMBER.findall(text))),
        math.log1p(len(_MATH_OP.findall(text))),
        math.log1p(len(_CODE.findall(text))),
        math.log1p(len(_QUESTION.findall(text))),
        math.log1p(max(1, len(_TURN.findall(text)))),
    ]


def feature_matrix(texts: list[str]) -> npt.NDArray[np.float32]:
    return np.array([text_features(t) for t in texts], dtype=np.float32).reshape(len(texts), len(FEATURE_NAMES))


def model_input(vectors: npt.NDArray[np.float32], texts: list[str], use_text_features: bool) -> npt.NDArray[np.float32]:
    """The classifier's input row(s): the embedding, optionally followed by text features."""
    vecs = np.asarray(vectors, dtype=np.float32)
    if vecs.ndim == 1:
        vecs = vecs.reshape(1, -1)
    if not use_text_features:
        return np.ascontiguousarray(vecs)
    return np.ascontiguousarray(np.hstack([vecs, feature_matrix(texts)]), dtype=np.float32)
