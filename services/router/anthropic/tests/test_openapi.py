"""The Messages door's OpenAPI part agrees with its parser and the core's validation.

The fuzz suite refuses a door that accepts what its document forbids, so
every body here that the parser and ``validate`` accept must satisfy the
document, and every body the document forbids must be refused.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from rationer.errors import InvalidArgument
from services.router.anthropic.openapi import paths, schemas
from services.router.anthropic.schema import parse_messages_request
from services.router.types import CompletionRequest, RequestLimits
from services.router.validation import validate

LIMITS = RequestLimits(max_tag_chars=16, max_stop=2)
REQUEST = jsonschema_rs.Draft202012Validator(schemas(LIMITS)["MessagesRequest"])
USER = {"role": "user", "content": "hi"}


def accepted(body: dict[str, Any]) -> bool:
    try:
        call = parse_messages_request(body)
        validate(CompletionRequest(call.messages, call.params, model=call.model, user=call.user), LIMITS)
    except InvalidArgument:
        return False
    return True


def base(**kw: Any) -> dict[str, Any]:
    return {"model": "auto", "max_tokens": 16, "messages": [USER], **kw}


@pytest.mark.parametrize(
    "body",
    [
        base(),
        base(system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}], stream=None),
        base(messages=[{"role": "user", "content": [{"type": "text", "text": " "}, {"type": "text", "text": "x"}]}]),
        base(messages=[USER, {"role": "assistant", "content": []}, {"role": "system", "content": "later"}]),
        base(temperature=1, top_p=1, top_k=3, stop_sequences=["a", "b"], metadata={"user_id": None, "x": 1}),
        base(metadata=None, unknown_field={"ignored": True}),
    ],
)
def test_what_the_door_accepts_the_document_allows(body: dict[str, Any]) -> None:
    assert accepted(body)
    assert REQUEST.is_valid(body), list(REQUEST.iter_errors(body))[:1]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "auto", "messages": [USER]},
        base(max_tokens=0),
        base(max_tokens=LIMITS.max_tokens_cap + 1),
        base(model="m" * 17),
        base(messages=[]),
        base(messages=[{"role": "assistant", "content": "only me"}]),
        base(messages=[{"role": "user", "content": "   "}]),
        base(messages=[{"role": "user", "content": [{"type": "image", "source": {}}]}]),
        base(messages=[{"role": "user", "content": "nul \x00"}]),
        base(temperature=1.01),
        base(top_k=0),
        base(stop_sequences=["a", "b", "c"]),
        base(stop_sequences=[""]),
        base(metadata={"user_id": "u" * 17}),
        base(stream="yes"),
    ],
)
def test_what_the_document_forbids_the_door_refuses(body: dict[str, Any]) -> None:
    assert not REQUEST.is_valid(body)
    assert not accepted(body)


def test_both_paths_need_the_version_header_and_list_anthropic_errors() -> None:
    doc = paths(LIMITS)
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        op = doc[path]["post"]
        assert any(p["name"] == "anthropic-version" and p["required"] for p in op["parameters"])
        assert op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/AnthropicError")
    assert "529" in doc["/v1/messages"]["post"]["responses"]
