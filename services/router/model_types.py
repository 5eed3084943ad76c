"""Plain data types the router core passes between its parts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class GenParams:
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    model: str
    model_ms: float = 0.0
    usage_exact: bool = True  # False: the upstream reported no usage


@dataclass(frozen=True)
class Delta:
    """A streamed piece of text; the last one has ``final`` and usage.

    A non-final delta with ``usage_exact`` carries the running usage (the
    worker counts what it generated so far); without it the counts are 0.
    """

    text: str
    final: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    model: str = ""
    # False when the upstream did not report usage (the core then bills the
    # reserved maximum, never $0).
    usage_exact: bool = True
