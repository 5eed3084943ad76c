"""Parsing and validation of Messages API requests, and the anthropic-version check."""

from __future__ import annotations

from typing import Any

import pytest

from rationer.errors import InvalidArgument
from services.router.anthropic.schema import parse_count_tokens, parse_messages_request
from services.router.anthropic.version import check_version

USER = [{"role": "user", "content": "hi"}]


def body(**kw: Any) -> dict[str, Any]:
    return {"model": "auto", "max_tokens": 64, "messages": USER, **kw}


def rejected(raw: Any) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        parse_messages_request(raw)
    return info.value


def test_every_honoured_field_is_mapped() -> None:
    call = parse_messages_request(
        {"model": "frontier", "max_tokens": 9, "temperature": 0, "top_p": 1, "top_k": 40,
         "stop_sequences": ["END", "\n\n"], "metadata": {"user_id": "u-7"}, "stream": True,
         "system": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief", "cache_control": {}}],
         "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                      {"role": "assistant", "content": "c"}, {"role": "user", "content": "d"}]}
    )  # fmt: skip
    assert [(m.role, m.content) for m in call.messages] == [
        ("system", "be brief"), ("user", "ab"), ("assistant", "c"), ("user", "d")]  # fmt: skip
    p = call.params
    assert (p.max_tokens, p.temperature, p.top_p, p.stop, p.seed) == (9, 0.0, 1.0, ("END", "\n\n"), None)
    assert (call.model, call.top_k, call.stream, call.user) == ("frontier", 40, True, "u-7")


def test_defaults_without_optional_fields() -> None:
    call = parse_messages_request(body())
    assert (call.stream, call.user, call.top_k, call.params.temperature) == (False, "", None, None)
    assert [m.role for m in call.messages] == ["user"]
    # An empty system prompt adds no message; unknown fields are ignored.
    assert len(parse_messages_request(body(system="", service_tier="auto")).messages) == 1


@pytest.mark.parametrize(
    ("raw", "param", "words"),
    [
        ({"model": "auto", "messages": USER}, "max_tokens", "field required"),
        (body(max_tokens=0), "max_tokens", "at least 1"),
        (body(max_tokens=True), "max_tokens", "must be an integer"),
        (body(max_tokens="64"), "max_tokens", "must be an integer"),
        ({"max_tokens": 5, "messages": USER}, "model", "field required"),
        (body(messages=[]), "messages", "non-empty list"),
        (body(messages="hi"), "messages", "non-empty list"),
        (body(messages=[*USER, {"role": "tool", "content": "x"}]), "messages.1.role", "'assistant' or 'system'"),
        (body(messages=[{"role": "user"}]), "messages.0.content", "field required"),
        (body(messages=[{"role": "user", "content": 5}]), "messages.0.content", "string or a list"),
        (body(messages=[{"role": "user", "content": [{"type": "text", "text": 1}]}]),
         "messages.0.content.0.text", "must be a string"),
        (body(messages=[{"role": "user", "content": ["x"]}]), "messages.0.content.0", "content block object"),
        (body(system=3), "system", "string or a list of text blocks"),
        (body(system=[{"type": "image"}]), "system.0.type", "image blocks are not supported"),
        (body(temperature=1.5), "temperature", "between 0 and 1"),
        (body(temperature="hot"), "temperature", "must be a number"),
        (body(top_p=-0.1), "top_p", "between 0 and 1"),
        (body(top_k=0), "top_k", "at least 1"),
        (body(stop_sequences="END"), "stop_sequences", "list of strings"),
        (body(stop_sequences=["a", ""]), "stop_sequences.1", "non-empty string"),
        (body(metadata="u"), "metadata", "an object"),
        (body(metadata={"user_id": 5}), "metadata.user_id", "must be a string"),
        (body(stream="yes"), "stream", "true or false"),
        (body(tools=[{"name": "f"}]), "tools", "not supported"),
        (body(thinking={"type": "enabled", "budget_tokens": 1024}), "thinking", "extended thinking"),
    ],
)  # fmt: skip
def test_rejections_name_the_field(raw: dict[str, Any], param: str, words: str) -> None:
    err = rejected(raw)
    assert err.param == param
    assert err.message.startswith(f"{param}: ") and words in err.message


def test_system_messages_inside_messages_keep_their_place() -> None:
    # Newer API versions (and the SDKs' SystemMessageParam) allow them mid-conversation.
    call = parse_messages_request(body(system="first", messages=[*USER, {"role": "system", "content": "then"}]))
    assert [(m.role, m.content) for m in call.messages] == [("system", "first"), ("user", "hi"), ("system", "then")]


def test_image_blocks_get_a_clear_refusal() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    err = rejected(body(messages=[{"role": "user", "content": [{"type": "text", "text": "what is it"}, image]}]))
    assert err.param == "messages.0.content.1.type"
    assert "image blocks are not supported by this gateway yet" in err.message
    assert "tool use" in rejected(body(messages=[{"role": "user", "content": [{"type": "tool_result"}]}])).message


def test_disabled_thinking_and_empty_tools_pass() -> None:
    assert parse_messages_request(body(thinking={"type": "disabled"}, tools=[])).params.max_tokens == 64


def test_a_body_that_is_not_an_object_is_refused() -> None:
    assert "JSON object" in rejected([body()]).message


def test_count_tokens_needs_no_max_tokens() -> None:
    call = parse_count_tokens({"model": "frontier", "system": "s", "messages": USER})
    assert call.model == "frontier" and [m.role for m in call.messages] == ["system", "user"]
    with pytest.raises(InvalidArgument, match="messages"):
        parse_count_tokens({"model": "frontier"})


@pytest.mark.parametrize("version", ["2023-06-01", "2023-01-01", " 2023-06-01 ", "2026-10-21"])
def test_supported_versions_pass(version: str) -> None:
    assert check_version({"anthropic-version": version}) == version.strip()


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({}, "header is required"),
        ({"anthropic-version": "2022-12-31"}, "not a supported version"),
        ({"anthropic-version": "latest"}, "not a supported version"),
        ({"anthropic-version": "2023-13-01"}, "not a supported version"),
    ],
)
def test_missing_or_unknown_version_is_a_400_naming_the_header(headers: dict[str, str], words: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_version(headers)
    assert info.value.param == "anthropic-version" and words in info.value.message
