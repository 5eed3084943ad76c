"""OpenAI wire format parsing and error mapping of the HTTP front door."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rationer.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.router.http.embeddings import parse_inputs
from services.router.http.errors import domain_response, limit_message, retry_after_s
from services.router.http.schema import ChunkWriter, completion_body, parse_chat, route_headers, usd
from services.router.types import RouteResult

MSG = [{"role": "user", "content": "hi"}]
NOW = datetime(2030, 6, 15, 12, tzinfo=UTC)


def test_parse_chat_maps_every_honoured_field() -> None:
    call = parse_chat(
        {"model": "frontier", "messages": [{"role": "developer", "content": "be brief"},
                                           {"role": "user", "content": [{"type": "text", "text": "a"},
                                                                        {"type": "text", "text": "b"}]}],
         "max_tokens": 9, "max_completion_tokens": 7, "temperature": 0, "top_p": 1, "stop": "END", "seed": 3,
         "stream": True, "stream_options": {"include_usage": True}, "user": "u1", "presence_penalty": 0.5},
        project="apollo",
    )  # fmt: skip
    r = call.request
    assert [(m.role, m.content) for m in r.messages] == [("system", "be brief"), ("user", "ab")]
    assert r.params.max_tokens == 7  # max_completion_tokens wins
    assert (r.params.temperature, r.params.top_p, r.params.stop, r.params.seed) == (0.0, 1.0, ("END",), 3)
    assert (r.model, r.user, r.project) == ("frontier", "u1", "apollo")
    assert call.stream and call.include_usage


def test_defaults_and_no_cache() -> None:
    call = parse_chat({"messages": MSG}, no_cache=True)
    assert call.requested_model == "auto" and call.request.params.max_tokens == 0
    assert call.request.no_cache and not call.stream
    assert not call.include_usage and not call.allow_restart


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"messages": MSG, "max_tokens": True}, "'max_tokens' must be a positive integer"),
        ({"messages": MSG, "max_tokens": -1}, "at least 1"),
        ({"messages": MSG, "stop": [1]}, "'stop' must be a string"),
        ({"messages": MSG, "seed": 1.5}, "'seed' must be an integer"),
        ({"messages": MSG, "tools": [{"type": "function"}]}, "'tools' is not supported"),
        ({"messages": MSG, "response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": MSG, "stream": True, "stream_options": {"include_usage": "yes"}}, "include_usage"),
        # As OpenAI: stream_options only with stream.
        ({"messages": MSG, "stream_options": {"include_usage": True}}, "only allowed when 'stream' is true"),
        ({"messages": "hi"}, "'messages' is required"),
        ({"messages": [{"content": "x"}]}, "string 'role'"),
    ],
)
def test_bad_fields_name_the_field(body: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_chat(body)
    assert needle in exc.value.message


def test_usd_is_exact() -> None:
    assert usd(0) == "0.000000000"
    assert usd(1) == "0.000000001"
    assert usd(12_345_678_901) == "12.345678901"
    assert usd(-5) == "-0.000000005"


def _result() -> RouteResult:
    return RouteResult(request_id="r1", tier="frontier", model="m", prompt_tokens=3, completion_tokens=2,
                       cost_nano_usd=1500, savings_nano_usd=20, finish_reason="length")  # fmt: skip


def test_completion_body_follows_the_openai_schema() -> None:
    body = completion_body("hello", _result(), created=1)
    assert body["id"] == "chatcmpl-r1" and body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert body["rationer"]["cost_usd"] == "0.000001500"


def test_chunks_end_with_usage_and_done() -> None:
    w = ChunkWriter("r1", 1, "auto", include_usage=True)
    first = json.loads(w.delta("", first=True)[6:])
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""} and first["usage"] is None
    events = w.final(_result()).decode().split("\n\n")
    final, usage_chunk = json.loads(events[0][6:]), json.loads(events[1][6:])
    assert final["choices"][0]["finish_reason"] == "length" and final["rationer"]["tier"] == "frontier"
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] == 5
    assert events[2] == "data: [DONE]"


def test_invalid_argument_param_reaches_the_error_json() -> None:
    resp = domain_response(InvalidArgument("x", param="seed"), NOW, "rid")
    assert resp.body is not None
    assert json.loads(resp.body)["error"]["param"] == "seed"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (InvalidArgument("x"), 400, None),
        (Unauthenticated("x"), 401, "invalid_api_key"),
        (PermissionDenied("x"), 403, "model_not_allowed"),
        (NotFound("x"), 404, "model_not_found"),
        (ResourceExhausted("x", limit_id="rpm:key:k1", retry_after_s=2.2), 429, "rate_limit_exceeded"),
        (Unavailable("x"), 503, None),
        (DeadlineExceeded("x"), 504, "timeout"),
    ],
)
def test_domain_errors_map_to_statuses(exc: Exception, status: int, code: str | None) -> None:
    resp = domain_response(exc, NOW, "rid")  # type: ignore[arg-type]
    assert resp.status == status and resp.headers["x-request-id"] == "rid"
    assert resp.body is not None
    body = json.loads(resp.body)  # type: ignore[arg-type]
    # NOT_FOUND is always about the model; other errors name a field only when the raiser knew it.
    assert body["error"]["code"] == code and body["error"]["param"] == ("model" if status == 404 else None)
    if status == 429:
        assert resp.headers["Retry-After"] == "3" and resp.headers["x-should-retry"] == "true"


def test_budget_message_names_limit_and_reset() -> None:
    # "now" is injected: the reset instant is in the future on any real date.
    resets = datetime(2026, 12, 1, tzinfo=UTC)
    now = resets - timedelta(days=3)
    exc = ResourceExhausted("budget exhausted", limit_id="budget:team:t1:usd:monthly", resets_at=resets)
    assert limit_message(exc, now) == (
        "budget exhausted; limit: budget:team:t1:usd:monthly; resets at 2026-12-01T00:00:00+00:00"
    )
    assert retry_after_s(exc, now=resets - timedelta(seconds=90.5)) == 91
    resp = domain_response(exc, now)
    assert resp.headers["x-should-retry"] == "false"
    assert resp.headers["Retry-After"] == str(3 * 86400)


def test_a_reset_that_has_passed_means_retry_now() -> None:
    resets = datetime(2026, 12, 1, tzinfo=UTC)
    exc = ResourceExhausted("budget exhausted", limit_id="budget:team:t1:usd:monthly", resets_at=resets)
    resp = domain_response(exc, resets + timedelta(seconds=5))
    assert resp.headers["Retry-After"] == "1" and resp.headers["x-should-retry"] == "true"


def test_embedding_inputs() -> None:
    assert parse_inputs({"input": "a"}, 4) == (["a"], "float")
    assert parse_inputs({"input": ["a", "b"], "encoding_format": "base64", "dimensions": 384}, 4)[1] == "base64"
    bads: list[dict[str, object]] = [{"input": [1, 2]}, {"input": []}, {"input": ["a"] * 5}, {"input": " "},
             {"input": "a", "dimensions": 64}, {"input": "a", "encoding_format": "int8"}]  # fmt: skip
    for bad in bads:
        with pytest.raises(InvalidArgument):
            parse_inputs(bad, 4)


def test_a_pending_settlement_is_flagged_in_the_headers() -> None:
    settled = route_headers(RouteResult(request_id="r1", tier="frontier", cost_nano_usd=1500))
    assert settled["x-rationer-cost-usd"] == "0.000001500" and "x-rationer-settlement" not in settled
    pending = RouteResult(request_id="r2", tier="frontier")
    pending.settlement_pending = True
    # Cost 0 here means "not priced yet", and the header says so.
    assert route_headers(pending)["x-rationer-settlement"] == "pending"
