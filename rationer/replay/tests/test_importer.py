from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rationer.errors import InvalidArgument
from rationer.replay.importer import ImportDefaults, import_log


def _log(tmp_path: Path, rows: list[object]) -> Path:
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_bodies_and_envelopes(tmp_path: Path) -> None:
    rows = [
        {"timestamp": "2026-11-28T10:00:05Z", "metadata": {"team": "sales", "project": "crm"},
         "body": {"model": "gpt-4o", "user": "bo", "max_completion_tokens": 64, "temperature": 0,
                  "messages": [{"role": "developer", "content": "be brief"},
                               {"role": "user", "content": [{"type": "text", "text": "hi "},
                                                            {"type": "image_url", "image_url": {}},
                                                            {"type": "text", "text": "there"}]}]}},
        {"created": 1_795_860_000_000, "request": {"messages": [{"role": "user", "content": "x"}],
                                                   "max_tokens": 5}},
        {"object": "list", "data": []},
    ]  # fmt: skip
    result = import_log(_log(tmp_path, rows), ImportDefaults(org="acme", team="ops", max_tokens=32))
    assert result.skipped == {"not_chat": 1}
    a, b = sorted(result.lines, key=lambda ln: ln.max_tokens, reverse=True)
    assert (a.org, a.team, a.user, a.project, a.max_tokens, a.temperature) == ("acme", "sales", "bo", "crm", 64, 0.0)
    assert a.messages == (("system", "be brief"), ("user", "hi there"))
    # Epoch milliseconds are recognised; offsets are from the earliest request.
    assert (b.team, b.user, b.temperature, b.max_tokens) == ("ops", "anonymous", None, 5)
    assert min(a.ts, b.ts) == 0.0
    iso = datetime(2026, 11, 28, 10, 0, 5, tzinfo=UTC).timestamp()
    assert abs(a.ts - b.ts) == pytest.approx(abs(iso - 1_795_860_000))


def test_untimed_lines_keep_order_and_bad_stamps_fail(tmp_path: Path) -> None:
    body = {"messages": [{"role": "user", "content": "q"}]}
    result = import_log(_log(tmp_path, [body, body]), ImportDefaults())
    assert [ln.ts for ln in result.lines] == [0.0, 1.0]
    assert len({ln.id for ln in result.lines}) == 2
    with pytest.raises(InvalidArgument, match="log line 1: timestamp 'yesterday'"):
        import_log(_log(tmp_path, [{"timestamp": "yesterday", "body": body}]), ImportDefaults())
    with pytest.raises(InvalidArgument, match="'max_tokens' must be an integer"):
        import_log(_log(tmp_path, [{"max_tokens": -3, **body}]), ImportDefaults())
