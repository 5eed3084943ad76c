from __future__ import annotations

import json
from pathlib import Path

import pytest

from rationer.errors import InvalidArgument
from rationer.replay.trace import BudgetSpec, Header, TraceLine, read_trace, write_trace


def _line(i: int, ts: float, **kw: object) -> TraceLine:
    base: dict[str, object] = {"id": f"r{i}", "ts": ts, "org": "acme", "team": "eng", "user": "a@x",
                               "messages": (("user", f"q{i}"),)}  # fmt: skip
    return TraceLine(**(base | kw))  # type: ignore[arg-type]


def test_round_trip_sorts_by_time(tmp_path: Path) -> None:
    header = Header(name="t", seed=1, duration_s=10, budgets=(BudgetSpec("acme", 0.5, team="eng"),))
    lines = [_line(0, 5.0, labels={"weak_ok": True, "strong_ok": False, "group": "g"}),
             _line(1, 1.0, temperature=None, project="p")]  # fmt: skip
    write_trace(tmp_path / "t.jsonl", header, lines)
    trace = read_trace(tmp_path / "t.jsonl")
    assert [ln.id for ln in trace.lines] == ["r1", "r0"]
    assert trace.lines[0].temperature is None and trace.lines[0].project == "p"
    assert trace.lines[1].group == "g" and trace.lines[1].has_correctness
    assert trace.lines[0].group == "r1"  # no group label: the line is its own group
    assert trace.header.budgets == header.budgets


def _write(tmp_path: Path, *rows: object) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


GOOD = {"ts": 0, "org": "o", "team": "t", "user": "u", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({k: v for k, v in GOOD.items() if k != "team"}, "line 1: missing field 'team'"),
        (GOOD | {"ts": -1}, "'ts' must be a finite offset"),
        (GOOD | {"ts": True}, "'ts' has the wrong type"),
        (GOOD | {"messages": [{"role": "robot", "content": "x"}]}, r"messages\[0\]"),
        (GOOD | {"messages": []}, "non-empty list"),
        (GOOD | {"max_tokens": 0}, "'max_tokens' must be an integer"),
        (GOOD | {"temperature": "hot"}, "'temperature' must be a number"),
        (GOOD | {"labels": {"weak_ok": "yes"}}, "labels.weak_ok must be true or false"),
        ("{not json", ":1: not valid JSON"),
    ],
)
def test_bad_lines_name_the_line(tmp_path: Path, row: object, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        read_trace(_write(tmp_path, row))


def test_structural_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="header must be the first line"):
        read_trace(_write(tmp_path, GOOD, {"header": {}}))
    with pytest.raises(InvalidArgument, match="unique"):
        read_trace(_write(tmp_path, GOOD | {"id": "x"}, GOOD | {"id": "x"}))
    with pytest.raises(InvalidArgument, match="unsupported format"):
        read_trace(_write(tmp_path, {"header": {"format": "other/9"}}, GOOD))
    with pytest.raises(InvalidArgument, match="budgets"):
        read_trace(_write(tmp_path, {"header": {"budgets": [{"org": "o", "usd": -1}]}}, GOOD))
    with pytest.raises(InvalidArgument, match="no request lines"):
        read_trace(_write(tmp_path, {"header": {}}))
    with pytest.raises(InvalidArgument, match="does not exist"):
        read_trace(tmp_path / "missing.jsonl")
