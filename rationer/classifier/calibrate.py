"""``rationer calibrate router``: pick the threshold that sends a chosen share
of an operator's own prompts to the strong tier, and write it to the router's
TOML config.

The config is edited as text, touching only the ``strong_threshold`` line of
the ``[router]`` table, so the operator's comments and layout survive; the
result is re-read with tomllib to prove it is still valid.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from rationer.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from rationer.embedding import Embedder

SECTION = "router"
KEY = "strong_threshold"
_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


def _key_line(key: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(key)}\s*=")


def text_from_messages(messages: list[Any]) -> str:
    """The prompt the router classifies for a chat request: the last user turn."""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(
                    str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
                )
    return ""


def _prompt_from_json(obj: Any, lineno: int) -> str:
    if isinstance(obj, dict):
        if isinstance(obj.get("prompt"), str):
            return str(obj["prompt"])
        if isinstance(obj.get("messages"), list):
            text = text_from_messages(obj["messages"])
            if text:
                return text
    raise InvalidArgument(f"line {lineno}: JSON object has neither a string 'prompt' nor 'messages' with a user turn")


def read_prompts(path: Path) -> list[str]:
    """JSONL with ``prompt`` or OpenAI ``messages`` per line, or plain text (one prompt per line).

    A Rationer trace (``rationer trace synth`` / ``import``) is accepted as is:
    its optional ``{"header": ...}`` first line carries no prompt and is skipped.
    """
    if not path.exists():
        raise InvalidArgument(f"prompts file {path} does not exist")
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise InvalidArgument(f"prompts file {path} holds no prompts")
    is_jsonl = path.suffix == ".jsonl" or lines[0].lstrip().startswith("{")
    if not is_jsonl:
        return lines
    prompts = []
    for i, line in enumerate(lines, start=1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{path} line {i} is not valid JSON: {exc.msg}") from exc
        if i == 1 and isinstance(obj, dict) and set(obj) == {"header"}:
            continue
        prompts.append(_prompt_from_json(obj, i))
    if not prompts:
        raise InvalidArgument(f"prompts file {path} holds only a trace header, no prompts")
    return prompts


def _labels_of(obj: Any) -> tuple[bool, bool] | None:
    """(weak_ok, strong_ok) from a trace line's ``labels`` or top-level keys; None if absent."""
    if not isinstance(obj, dict):
        return None
    labels = obj.get("labels")
    src: dict[str, Any] = labels if isinstance(labels, dict) else obj
    weak, strong = src.get("weak_ok"), src.get("strong_ok")
    if isinstance(weak, bool) and isinstance(strong, bool):
        return weak, strong
    return None


def read_labelled(path: Path) -> tuple[list[str], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Prompts with both ``weak_ok`` and ``strong_ok`` labels (a trace's ``labels`` or
    top-level keys); unlabelled lines are skipped, none at all is an error."""
    prompts = read_prompts(path)
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    objs = [json.loads(ln) for ln in lines] if lines[0].lstrip().startswith("{") else []
    objs = [o for o in objs if not (isinstance(o, dict) and set(o) == {"header"})]
    keep, weak, strong = [], [], []
    for prompt, obj in zip(prompts, objs, strict=False):
        lab = _labels_of(obj)
        if lab is not None:
            keep.append(prompt)
            weak.append(lab[0])
            strong.append(lab[1])
    if not keep:
        raise InvalidArgument(
            f"{path} has no lines labelled with weak_ok and strong_ok; --quality needs them "
            "(a `rationer trace synth` trace has them), or use --strong-share"
        )
    return keep, np.asarray(weak, dtype=bool), np.asarray(strong, dtype=bool)


def threshold_for_quality(
    scores: npt.ArrayLike, weak: npt.ArrayLike, strong: npt.ArrayLike, fraction: float
) -> tuple[float, float]:
    """The highest threshold (fewest strong calls) whose routing keeps ``fraction``
    of strong-only quality on these prompts; returns (threshold, strong share)."""
    if not 0.0 < fraction <= 1.0:
        raise InvalidArgument(f"--quality must be in (0, 1], got {fraction}")
    s = np.asarray(scores, dtype=np.float64)
    w, st = np.asarray(weak, dtype=np.float64), np.asarray(strong, dtype=np.float64)
    if len(s) == 0:
        raise InvalidArgument("no prompts to calibrate on")
    order = np.argsort(-s, kind="stable")
    gain = np.cumsum((st - w)[order])
    # Thresholds can only sit at the end of a group of tied scores.
    ends = np.append(np.flatnonzero(np.diff(s[order]) != 0), len(s) - 1)
    quality = (w.sum() + gain[ends]) / len(s)
    ok = np.flatnonzero(quality >= fraction * st.mean() - 1e-12)
    # Routing everything strong always qualifies, so ``ok`` is never empty.
    end = int(ends[ok[0]]) if len(ok) else len(s) - 1
    return float(s[order][end]), (end + 1) / len(s)


def threshold_for_share(scores: npt.ArrayLike, share: float) -> float:
    """Routing ``score >= threshold`` to strong sends ``share`` of these prompts there
    (rounded up to whole prompts; ties at the threshold all go strong)."""
    if not 0.0 < share <= 1.0:
        raise InvalidArgument(f"--strong-share must be in (0, 1], got {share}")
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if len(s) == 0:
        raise InvalidArgument("no prompts to calibrate on")
    k = min(len(s), max(1, int(np.ceil(share * len(s)))))
    return float(s[k - 1])


def _toml_float(x: float) -> str:
    if not np.isfinite(x):
        raise InvalidArgument(f"threshold {x} is not a finite number")
    return repr(float(x))


def update_config_text(text: str, threshold: float, note: str = "", *, section: str = SECTION,
                       key: str = KEY) -> str:  # fmt: skip
    """``text`` with ``[router] strong_threshold`` (or ``[section] key``) set,
    everything else untouched. Shared by ``rationer calibrate cache``."""
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{section} config is not valid TOML: {exc}") from exc
    line = f"{key} = {_toml_float(threshold)}" + (f"  # {note}" if note else "")
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if (m := _HEADER.match(ln)) and m.group(1) == section), None)
    if start is None:
        if section in before:
            raise FailedPrecondition(
                f"the config defines '{section}' without a [{section}] header (dotted keys or inline "
                f"table); add `{key} = {_toml_float(threshold)}` to it by hand"
            )
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        out = text + sep + f"[{section}]\n{line}\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
        hit = next((i for i in range(start + 1, end) if _key_line(key).match(lines[i])), None)
        if hit is None:
            lines.insert(start + 1, line)
        else:
            lines[hit] = line
        out = "\n".join(lines) + "\n"
    after = tomllib.loads(out)
    if after[section][key] != float(threshold):
        raise FailedPrecondition("writing the threshold did not round-trip; the config was left unchanged")
    return out


def write_threshold(config_path: Path, threshold: float, note: str = "", *, section: str = SECTION,
                    key: str = KEY, also: dict[str, float] | None = None) -> None:  # fmt: skip
    """Set ``[section] key`` (and each of ``also``) in one atomic rewrite."""
    text = config_path.read_text(encoding="utf-8") if config_path.exists() else ""
    out = update_config_text(text, threshold, note, section=section, key=key)
    for other, value in (also or {}).items():
        out = update_config_text(out, value, section=section, key=other)
    config_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=config_path.parent, suffix=".toml.tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(out)
    os.replace(tmp, config_path)


def _score_all(scorer: Any, prompts: list[str]) -> npt.NDArray[np.float64]:
    chunks = [scorer.score_texts(prompts[i : i + 64]) for i in range(0, len(prompts), 64)]
    return np.concatenate(chunks).astype(np.float64)


def calibrate(
    prompts_path: Path,
    share: float | None,
    config_path: Path,
    artifact_dir: Path | None = None,
    quality: float | None = None,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Strong-share mode (``share``) or quality mode (``quality``: the cheapest
    threshold keeping that fraction of strong-only quality on labelled prompts)."""
    from rationer.classifier.scorer import ComplexityScorer

    if (share is None) == (quality is None):
        raise InvalidArgument("give exactly one of --strong-share and --quality")
    scorer = ComplexityScorer(artifact_dir, embedder=embedder)
    stamp = dt.date.today().isoformat()
    extra: dict[str, Any] = {}
    if quality is not None:
        prompts, weak, strong = read_labelled(prompts_path)
        scores = _score_all(scorer, prompts)
        threshold, _ = threshold_for_quality(scores, weak, strong, quality)
        routed = scores >= threshold
        extra = {
            "requested_quality": quality,
            "achieved_quality_vs_strong_only": float(np.where(routed, strong, weak).mean() / max(strong.mean(), 1e-12)),
            "quality_weak_only": float(weak.mean()),
            "quality_strong_only": float(strong.mean()),
        }
        note = f"rationer calibrate router: {quality:.0%} of strong-only quality on {len(prompts)} prompts, {stamp}"
    else:
        assert share is not None
        prompts = read_prompts(prompts_path)
        scores = _score_all(scorer, prompts)
        threshold = threshold_for_share(scores, share)
        extra = {"requested_strong_share": share}
        note = f"rationer calibrate router: {share:.0%} strong on {len(prompts)} prompts, {stamp}"
    write_threshold(config_path, threshold, note)
    return {
        "prompts": len(prompts),
        **extra,
        "achieved_strong_share": float(np.mean(scores >= threshold)),
        "strong_threshold": threshold,
        "artifact_default_threshold": scorer.threshold,
        "config": str(config_path),
        "score_quantiles": {f"p{q}": float(np.percentile(scores, q)) for q in (10, 25, 50, 75, 90)},
    }
