"""Anthropic Messages responses: the JSON body and the streamed event sequence.

Built from plain values (text, usage, the core's finish reason) so that the
door and the tests share one writer. The event order is the published one:
``message_start``, ``content_block_start``, ``ping``, any number of
``content_block_delta``, ``content_block_stop``, ``message_delta`` (stop
reason and usage), ``message_stop``; a failure after the start is an
``error`` event, after which the stream closes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# The core's finish reasons (OpenAI's vocabulary) -> Anthropic's stop_reason.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence"}


@dataclass(frozen=True)
class Usage:
    """Anthropic's usage object. ``input_tokens`` excludes cache reads and writes, as upstream."""

    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def body(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }


def stop_reason(finish_reason: str) -> str:
    return STOP_REASONS.get(finish_reason, "end_turn")


def message_id(request_id: str) -> str:
    return f"msg_{request_id}"


def message_body(
    *, request_id: str, model: str, text: str, finish_reason: str, usage: Usage,
    stop_sequence: str | None = None, meta: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A non-streaming ``message`` object; ``meta`` is the gateway's routing record (field ``rationer``)."""
    body: dict[str, Any] = {
        "id": message_id(request_id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason(finish_reason),
        "stop_sequence": stop_sequence,
        "usage": usage.body(),
    }
    if meta is not None:
        body["rationer"] = meta
    return body


def count_tokens_body(input_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens}


def event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: ".encode() + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def error_event(error_type: str, message: str) -> bytes:
    return event("error", {"type": "error", "error": {"type": error_type, "message": message}})


@dataclass(frozen=True)
class EventWriter:
    """Builds the event stream of one streamed message (a single text block at index 0)."""

    request_id: str
    model: str

    def start(self, input_tokens: int = 0) -> bytes:
        """``message_start`` (usage as known so far), the text block's start and one ``ping``.

        Anthropic reports input tokens here; where the gateway learns the
        exact count only at the end, ``message_delta`` carries it too.
        """
        message: dict[str, Any] = {
            "id": message_id(self.request_id),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": Usage(input_tokens, 0).body(),
        }
        return (
            event("message_start", {"type": "message_start", "message": message})
            + event("content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
            + self.ping()
        )  # fmt: skip

    def ping(self) -> bytes:
        return event("ping", {"type": "ping"})

    def delta(self, text: str) -> bytes:
        payload = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
        return event("content_block_delta", payload)

    def finish(
        self, finish_reason: str, usage: Usage, *, stop_sequence: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> bytes:  # fmt: skip
        """``content_block_stop``, ``message_delta`` with the final usage, ``message_stop``.

        The usage is cumulative and complete (input and cache fields too), as
        in Anthropic's current API, so SDK accumulators end with exact counts.
        """
        delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(finish_reason), "stop_sequence": stop_sequence},
            "usage": usage.body(),
        }
        if meta is not None:
            delta["rationer"] = meta
        return (
            event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + event("message_delta", delta)
            + event("message_stop", {"type": "message_stop"})
        )
