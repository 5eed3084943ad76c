"""``rationer trace import``: an OpenAI-style request log -> a trace.

Each input line is one chat completion request, either the bare request body
(``{"model", "messages", "max_tokens", ...}``) or an envelope holding it
under ``body`` or ``request`` with a timestamp (``timestamp``, ``created``,
``created_at`` or ``ts``: epoch seconds or ISO 8601) and optional
``metadata`` (``org``, ``team``, ``project``, ``user``). Times become offsets
from the earliest request; missing org/team/user take the command's defaults.
Lines that are not chat requests (no ``messages``) are skipped and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rationer.errors import InvalidArgument
from rationer.replay.trace import Header, TraceLine, iter_json_lines, parse_line

TIME_KEYS = ("timestamp", "created", "created_at", "ts", "time")


@dataclass(frozen=True)
class ImportDefaults:
    org: str = "default"
    team: str = "default"
    user: str = "anonymous"
    project: str = ""
    max_tokens: int = 256


@dataclass
class ImportResult:
    lines: list[TraceLine]
    skipped: dict[str, int] = field(default_factory=dict)


def _epoch(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # Milliseconds since the epoch are common in logs; seconds would be < 1e11.
        return float(value) / 1000.0 if value > 1e11 else float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise InvalidArgument(f"{where}: timestamp {value!r} is neither epoch seconds nor ISO 8601") from None
    raise InvalidArgument(f"{where}: timestamp has the wrong type ({type(value).__name__})")


def _content(raw: Any) -> str:
    """OpenAI content: a string, or a list of parts of which the text ones count."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        return "".join(str(p.get("text", "")) for p in raw if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _messages(raw: list[Any]) -> list[dict[str, str]]:
    out = []
    for m in raw:
        if not isinstance(m, dict):
            continue
        role = {"developer": "system"}.get(str(m.get("role")), str(m.get("role")))
        if role in ("system", "user", "assistant"):
            out.append({"role": role, "content": _content(m.get("content"))})
    return out


def _convert(obj: dict[str, Any], lineno: int, d: ImportDefaults) -> tuple[float | None, dict[str, Any]] | None:
    where = f"log line {lineno}"
    body = obj.get("body") or obj.get("request") or obj
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return None
    meta = obj.get("metadata") or body.get("metadata") or {}
    meta = meta if isinstance(meta, dict) else {}
    when = next((obj[k] for k in TIME_KEYS if k in obj), None)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or d.max_tokens
    row = {
        "id": str(obj.get("id") or body.get("id") or f"log{lineno}"),
        "ts": 0.0,
        "org": str(meta.get("org") or d.org),
        "team": str(meta.get("team") or d.team),
        "user": str(body.get("user") or meta.get("user") or d.user),
        "project": str(meta.get("project") or d.project),
        "messages": _messages(body["messages"]),
        "max_tokens": max_tokens,
        "temperature": body.get("temperature"),
    }
    return _epoch(when, where), row


def import_log(path: Path, defaults: ImportDefaults) -> ImportResult:
    if not path.exists():
        raise InvalidArgument(f"log file {path} does not exist")
    rows: list[tuple[int, float | None, dict[str, Any]]] = []
    skipped = {"not_chat": 0}
    for lineno, obj in iter_json_lines(path):
        converted = _convert(obj, lineno, defaults)
        if converted is None:
            skipped["not_chat"] += 1
            continue
        rows.append((lineno, *converted))
    stamps = [t for _, t, _ in rows if t is not None]
    t0 = min(stamps) if stamps else 0.0
    lines = []
    for i, (lineno, when, row) in enumerate(rows):
        # Untimed requests keep their order, one second apart.
        row["ts"] = (when - t0) if when is not None else float(i)
        if not math.isfinite(row["ts"]):
            raise InvalidArgument(f"log line {lineno}: timestamp is not finite")
        lines.append(parse_line(row, lineno))
    ids = [ln.id for ln in lines]
    if len(set(ids)) != len(ids):
        lines = [TraceLine(**{**ln.__dict__, "id": f"log{i:06d}"}) for i, ln in enumerate(lines)]
    return ImportResult(sorted(lines, key=lambda ln: ln.ts), skipped)


def header_for(path: Path, result: ImportResult) -> Header:
    span = max((ln.ts for ln in result.lines), default=0.0)
    return Header(name=f"import:{path.name}", duration_s=span, generator={"imported_from": str(path)})
