"""The Messages response body, the streamed event sequence and the Anthropic error JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rationer.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RationerError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.router.anthropic.errors import domain_response, status_response, stream_error
from services.router.anthropic.response import EventWriter, Usage, count_tokens_body, message_body, stop_reason

NOW = datetime(2030, 6, 15, 12, tzinfo=UTC)


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Parse an SSE byte stream the way the spec defines it: ``event:`` then ``data:``, blank-line separated."""
    out = []
    for chunk in raw.decode().split("\n\n"):
        if not chunk:
            continue
        name_line, data_line = chunk.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        data = json.loads(data_line[6:])
        assert data["type"] == name_line[7:]  # the spec repeats the event name in the data
        out.append((name_line[7:], data))
    return out


def test_message_body_has_the_spec_fields() -> None:
    usage = Usage(input_tokens=7, output_tokens=3, cache_read_input_tokens=2)
    body = message_body(request_id="r1", model="m", text="hi there", finish_reason="length", usage=usage,
                        meta={"tier": "local"})  # fmt: skip
    assert body == {
        "id": "msg_r1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "text", "text": "hi there"}], "stop_reason": "max_tokens", "stop_sequence": None,
        "usage": {"input_tokens": 7, "output_tokens": 3, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 2},
        "rationer": {"tier": "local"},
    }  # fmt: skip
    assert "rationer" not in message_body(request_id="r", model="m", text="", finish_reason="stop", usage=usage)
    assert count_tokens_body(12) == {"input_tokens": 12}


@pytest.mark.parametrize(("finish", "reason"), [("stop", "end_turn"), ("length", "max_tokens"),
                                                ("stop_sequence", "stop_sequence"), ("", "end_turn")])  # fmt: skip
def test_stop_reasons(finish: str, reason: str) -> None:
    assert stop_reason(finish) == reason


def test_the_event_sequence_is_the_published_one() -> None:
    w = EventWriter(request_id="r2", model="claude-x")
    raw = w.start(input_tokens=5) + w.delta("Hel") + w.delta("lo") + w.finish("stop", Usage(9, 2), meta={"a": 1})
    got = events(raw)
    assert [name for name, _ in got] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]  # fmt: skip
    start = got[0][1]["message"]
    assert (start["id"], start["model"], start["content"], start["stop_reason"]) == ("msg_r2", "claude-x", [], None)
    assert start["usage"]["input_tokens"] == 5 and start["usage"]["output_tokens"] == 0
    assert got[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert [d["delta"] for _, d in got[3:5]] == [{"type": "text_delta", "text": t} for t in ("Hel", "lo")]
    final = got[6][1]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"]["input_tokens"] == 9 and final["usage"]["output_tokens"] == 2
    assert final["rationer"] == {"a": 1}


def error_json(exc: RationerError) -> tuple[int, dict[str, Any], dict[str, str]]:
    resp = domain_response(exc, NOW, "req-9")
    assert resp.body is not None and isinstance(resp.body, bytes)
    return resp.status, json.loads(resp.body), dict(resp.headers)


@pytest.mark.parametrize(
    ("exc", "status", "kind"),
    [
        (InvalidArgument("bad", param="max_tokens"), 400, "invalid_request_error"),
        (Unauthenticated("no key"), 401, "authentication_error"),
        (PermissionDenied("not yours"), 403, "permission_error"),
        (NotFound("no such model"), 404, "not_found_error"),
        (AlreadyExists("dup"), 409, "invalid_request_error"),
        (ResourceExhausted("slow down", retry_after_s=2), 429, "rate_limit_error"),
        (Unavailable("all tiers down"), 529, "overloaded_error"),
        (DeadlineExceeded("too slow"), 504, "timeout_error"),
        (Cancelled("gone"), 499, "api_error"),
        (Internal("bug"), 500, "api_error"),
        (RationerError("unknown kind"), 500, "api_error"),
    ],
)
def test_domain_errors_map_to_anthropic_types_and_statuses(exc: RationerError, status: int, kind: str) -> None:
    got_status, body, headers = error_json(exc)
    assert got_status == status
    assert body["type"] == "error" and body["error"]["type"] == kind and body["request_id"] == "req-9"
    assert exc.message.rstrip(".") in body["error"]["message"]
    assert headers["request-id"] == headers["x-request-id"] == "req-9"


def test_429_carries_retry_after_and_names_the_limit() -> None:
    resets = NOW + timedelta(seconds=42)
    status, body, headers = error_json(ResourceExhausted("rate limit hit", limit_id="rpm:team-a", resets_at=resets))
    assert status == 429 and headers["retry-after"] == "42" and headers["x-should-retry"] == "true"
    assert headers["x-rationer-limit"] == "rpm:team-a" and "rpm:team-a" in body["error"]["message"]
    _, _, monthly = error_json(ResourceExhausted("budget spent", limit_id="budget:team-a",
                                                 resets_at=NOW + timedelta(days=12)))  # fmt: skip
    # A wait past what an SDK's backoff covers: tell it not to retry.
    assert monthly["x-should-retry"] == "false" and int(monthly["retry-after"]) == 12 * 86400


@pytest.mark.parametrize(("status", "kind"), [(413, "request_too_large"), (400, "invalid_request_error"),
                                              (405, "invalid_request_error"), (418, "invalid_request_error"),
                                              (503, "api_error")])  # fmt: skip
def test_http_layer_errors(status: int, kind: str) -> None:
    resp = status_response(status, "body too large", "req-1", close=True)
    assert resp.status == status and isinstance(resp.body, bytes)
    assert json.loads(resp.body)["error"] == {"type": kind, "message": "body too large"}
    assert resp.keep_alive is False


def test_stream_error_event() -> None:
    [(name, data)] = events(stream_error(Unavailable("tier died"), NOW))
    assert name == "error" and data["error"] == {"type": "overloaded_error", "message": "tier died"}
    [(_, hidden)] = events(stream_error(ValueError("secret internals"), NOW))
    assert hidden["error"]["type"] == "api_error" and "secret" not in hidden["error"]["message"]
    [(_, limited)] = events(stream_error(ResourceExhausted("over", limit_id="tpm"), NOW))
    assert limited["error"]["type"] == "rate_limit_error" and "tpm" in limited["error"]["message"]
