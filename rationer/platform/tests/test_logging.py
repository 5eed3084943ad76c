"""The redaction every log line goes through (rationer/platform/logging.py)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from rationer.platform.logging import REDACTED, configure_logging, register_secret, scrub

KEY = "rk-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v"
PROMPT = "my confidential prompt about the quarterly numbers"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Configure logging into a buffer, as an entry point would; restore afterwards."""
    saved, handlers, level = structlog.get_config(), logging.getLogger().handlers[:], logging.getLogger().level
    buf = io.StringIO()
    yield buf
    structlog.configure(**saved)
    logging.getLogger().handlers[:] = handlers
    logging.getLogger().setLevel(level)


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        (f"Authorization: Bearer {KEY}", KEY),
        ("headers={'authorization': 'Bearer opaque-token-123'}", "opaque-token-123"),
        ("(('authorization', 'opaque-token-456'),)", "opaque-token-456"),
        ("api_key=sk-proj-abcdefghijklmnop admin_token: hunter2hunter2", "hunter2hunter2"),
        ("api_key=sk-proj-abcdefghijklmnop", "sk-proj-abcdefghijklmnop"),
        (f"key {KEY} in prose", KEY),
        (f"b'Authorization: Bearer {KEY}aaaa'", KEY),
    ],
)
def test_scrub_removes_credentials_wherever_they_appear(text: str, gone: str) -> None:
    out = scrub(text)
    assert gone not in out and REDACTED in out


def test_scrub_keeps_hints_and_ordinary_words() -> None:
    for text in ("send 'Authorization: Bearer <rationer key>'", "network-attached storage", "a secret, kept"):
        assert scrub(text) == text


def test_registered_secrets_are_scrubbed_in_any_format() -> None:
    register_secret("plain-admin-token-xyz", None, "short")
    assert scrub("token plain-admin-token-xyz.") == f"token {REDACTED}."
    assert scrub("short") == "short"  # too short to scrub without garbling other words


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_structlog_and_stdlib_lines_are_redacted_at_debug(captured: io.StringIO, fmt: str) -> None:
    configure_logging(fmt, "DEBUG", stream=captured, secrets=["registered-secret-987"])
    log = structlog.get_logger("test")
    log.debug("calling", authorization=f"Bearer {KEY}", prompt=PROMPT, messages=[{"content": PROMPT}],
              detail={"api_key": "nested-key-value", "note": f"with {KEY}"}, tokens=12)  # fmt: skip
    logging.getLogger("aiohttp.server").debug("raw header %s", f"Authorization: Bearer {KEY} registered-secret-987")
    out = captured.getvalue()
    for secret in (KEY, PROMPT, "nested-key-value", "registered-secret-987"):
        assert secret not in out
    assert "tokens" in out and "[redacted: 50 chars]" in out and "raw header Authorization" in out
    if fmt == "json":
        first = json.loads(out.splitlines()[0])
        assert first["prompt"] == "[redacted: 50 chars]" and first["detail"]["api_key"] == REDACTED


def _fails_holding_secrets(api_key: str, prompt: str) -> None:
    raise ValueError(f"upstream said Bearer {api_key}")


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_exceptions_render_without_locals_and_scrubbed(captured: io.StringIO, fmt: str) -> None:
    configure_logging(fmt, "INFO", stream=captured)
    try:
        _fails_holding_secrets(KEY, PROMPT)
    except ValueError:
        structlog.get_logger("test").exception("handler failed")
        logging.getLogger("asyncio").exception("task failed")
    out = captured.getvalue()
    assert out.count("Traceback (most recent call last)") == 2 and "ValueError: upstream said Bearer" in out
    assert KEY not in out and PROMPT not in out
