"""The trace format: JSON Lines, one request per line (``rationer-trace/1``).

An optional first line ``{"header": {...}}`` carries the trace's name, seed,
duration and the budgets to provision. Every other line is one request::

    {"id": "r000042", "ts": 3715.2, "org": "acme", "team": "support",
     "user": "dana@acme.example", "project": "helpdesk",
     "messages": [{"role": "user", "content": "..."}], "max_tokens": 8,
     "temperature": 0.0,
     "labels": {"weak_ok": true, "strong_ok": true, "group": "mmlu:anatomy:12",
                "kind": "mmlu", "variant": "paraphrase"}}

``labels`` is optional. ``weak_ok``/``strong_ok`` say whether a weak (local)
and a strong (frontier) model answer this prompt correctly; ``group`` names
the underlying prompt, shared by its exact and paraphrased repeats, so a cache
hit can be told right from wrong; ``reference`` is a reference answer scored
by containment when no correctness labels exist. Bad lines raise
``InvalidArgument`` naming the line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rationer.errors import InvalidArgument

FORMAT = "rationer-trace/1"
ROLES = frozenset({"system", "user", "assistant"})
PERIODS = frozenset({"daily", "monthly", "lifetime"})


@dataclass(frozen=True)
class BudgetSpec:
    """A budget to provision: on a team (``team`` set) or the whole org."""

    org: str
    usd: float
    team: str = ""
    period: str = "lifetime"
    soft: float = 0.8


@dataclass(frozen=True)
class Header:
    name: str = "trace"
    seed: int | None = None
    duration_s: float = 0.0
    budgets: tuple[BudgetSpec, ...] = ()
    generator: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["format"] = FORMAT
        out["budgets"] = [asdict(b) for b in self.budgets]
        return out


@dataclass(frozen=True)
class TraceLine:
    id: str
    ts: float
    org: str
    team: str
    user: str
    messages: tuple[tuple[str, str], ...]
    project: str = ""
    max_tokens: int = 16
    temperature: float | None = 0.0  # None: not sent (the model's default)
    labels: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        """The underlying prompt; repeats share it. Defaults to the line id."""
        return str(self.labels.get("group") or self.id)

    @property
    def has_correctness(self) -> bool:
        return "weak_ok" in self.labels and "strong_ok" in self.labels

    @property
    def prompt_chars(self) -> int:
        return sum(len(c) for _, c in self.messages)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "ts": round(self.ts, 3), "org": self.org, "team": self.team, "user": self.user,
            "project": self.project, "messages": [{"role": r, "content": c} for r, c in self.messages],
            "max_tokens": self.max_tokens, "temperature": self.temperature,
        }  # fmt: skip
        if self.labels:
            out["labels"] = self.labels
        return out


@dataclass(frozen=True)
class Trace:
    header: Header
    lines: tuple[TraceLine, ...]


def _need(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in raw:
        raise InvalidArgument(f"{where}: missing field {key!r}")
    value = raw[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidArgument(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _name(raw: dict[str, Any], key: str, where: str) -> str:
    value = str(_need(raw, key, str, where)).strip()
    if not value or len(value) > 128:
        raise InvalidArgument(f"{where}: {key!r} must be 1-128 characters")
    return value


def _messages(raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidArgument(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise InvalidArgument(
                f"{where}: messages[{i}] must be {{'role': system|user|assistant, 'content': <string>}}"
            )
        out.append((str(m["role"]), str(m["content"])))
    return tuple(out)


def parse_line(raw: dict[str, Any], lineno: int) -> TraceLine:
    where = f"trace line {lineno}"
    ts = float(_need(raw, "ts", (int, float), where))  # bool is refused by _need
    if not math.isfinite(ts) or ts < 0:
        raise InvalidArgument(f"{where}: 'ts' must be a finite offset in seconds >= 0, got {ts}")
    max_tokens = raw.get("max_tokens", 16)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= 100_000:
        raise InvalidArgument(f"{where}: 'max_tokens' must be an integer in 1..100000")
    raw_t = raw.get("temperature")
    if raw_t is not None and (not isinstance(raw_t, (int, float)) or isinstance(raw_t, bool)):
        raise InvalidArgument(f"{where}: 'temperature' must be a number or null")
    temperature = None if raw_t is None else float(raw_t)
    if temperature is not None and (not math.isfinite(temperature) or temperature < 0):
        raise InvalidArgument(f"{where}: 'temperature' must be >= 0 or null")
    labels = raw.get("labels") or {}
    if not isinstance(labels, dict):
        raise InvalidArgument(f"{where}: 'labels' must be an object")
    for key in ("weak_ok", "strong_ok"):
        if key in labels and not isinstance(labels[key], bool):
            raise InvalidArgument(f"{where}: labels.{key} must be true or false")
    return TraceLine(
        id=str(raw.get("id") or f"line{lineno}"), ts=ts, org=_name(raw, "org", where),
        team=_name(raw, "team", where), user=_name(raw, "user", where), project=str(raw.get("project", "")),
        messages=_messages(raw.get("messages"), where), max_tokens=max_tokens, temperature=temperature,
        labels=dict(labels),
    )  # fmt: skip


def _header(raw: dict[str, Any]) -> Header:
    fmt = raw.get("format", FORMAT)
    if fmt != FORMAT:
        raise InvalidArgument(f"trace header: unsupported format {fmt!r}; this reader knows {FORMAT!r}")
    budgets = []
    for i, b in enumerate(raw.get("budgets") or []):
        try:
            spec = BudgetSpec(org=str(b["org"]), usd=float(b["usd"]), team=str(b.get("team", "")),
                              period=str(b.get("period", "lifetime")), soft=float(b.get("soft", 0.8)))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"trace header: budgets[{i}] needs org and usd ({exc})") from None
        if spec.usd <= 0 or spec.period not in PERIODS or not 0 < spec.soft <= 1:
            raise InvalidArgument(f"trace header: budgets[{i}]: usd > 0, period in {sorted(PERIODS)}, 0 < soft <= 1")
        budgets.append(spec)
    return Header(name=str(raw.get("name", "trace")), seed=raw.get("seed"),
                  duration_s=float(raw.get("duration_s", 0.0)), budgets=tuple(budgets),
                  generator=dict(raw.get("generator") or {}))  # fmt: skip


def iter_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; bad JSON names its line."""
    with path.open(encoding="utf-8") as fh:
        for lineno, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidArgument(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise InvalidArgument(f"{path}:{lineno}: each line must be a JSON object")
            yield lineno, obj


def read_trace(path: Path) -> Trace:
    if not path.exists():
        raise InvalidArgument(f"trace file {path} does not exist; build one with `rationer trace synth`")
    header = Header()
    lines: list[TraceLine] = []
    for lineno, obj in iter_json_lines(path):
        if "header" in obj:
            if lines:
                raise InvalidArgument(f"{path}:{lineno}: the header must be the first line")
            header = _header(obj["header"])
            continue
        lines.append(parse_line(obj, lineno))
    if not lines:
        raise InvalidArgument(f"trace {path} has no request lines")
    ids = [ln.id for ln in lines]
    if len(set(ids)) != len(ids):
        raise InvalidArgument(f"trace {path}: line ids must be unique")
    return Trace(header, tuple(sorted(lines, key=lambda ln: ln.ts)))


def write_trace(path: Path, header: Header, lines: Iterable[TraceLine]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"header": header.to_json()}) + "\n")
        for line in lines:
            fh.write(json.dumps(line.to_json(), ensure_ascii=False) + "\n")
            n += 1
    return n
