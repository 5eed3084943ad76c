"""Labelled sentence pairs for the cache's evaluation and calibration.

Each pair reads "the answer cached for ``a``: may it be served for ``b``?".

* fow-cache (MIT, the ``fow-cache`` package): 600 question pairs in
  paraphrase/near-repeat (should hit) and trap families, plus 240
  conversation pairs. The package has no split, so :func:`fow_split` makes
  one: half of each category to ``train`` (fit and calibration), half to
  ``test`` (reported), pairs that share a text always on one side, chosen
  by a hash of the pair ids (no randomness, no look at the texts' scores).
  The conversations are never fitted or calibrated on: all of them are
  held out (``conversations``).
* MSRP and SICK (``../shared/data/paraphrase``, read in place, research
  licences: used to evaluate and calibrate, never to fit a shipped model).
  MSRP: ``paraphrase`` true = should hit. SICK: ENTAILMENT with relatedness
  >= 4.5 = should hit; CONTRADICTION and NEUTRAL = traps (reported apart);
  ENTAILMENT below 4.5 is left out (one direction entails, the answers may
  still differ).
* An operator's own pairs: JSONL with ``a``, ``b``, ``same_answer``.

Pure data loading; no embedder, no cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from rationer.errors import FailedPrecondition, InvalidArgument

PARAPHRASE_DIR = Path("..") / "shared" / "data" / "paraphrase"
SICK_MIN_RELATEDNESS = 4.5
DATASETS = ("fow-cache", "msrp", "sick")


@dataclass(frozen=True)
class Pair:
    dataset: str
    split: str  # "train" | "val" | "test" | "all"
    group: str  # e.g. "paraphrase", "contradiction", "negation"
    a: str  # the cached text
    b: str  # the new text
    same_answer: bool


def repo_root() -> Path:
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").exists() else Path.cwd()


def resolve_paraphrase_dir(data_dir: Path | None) -> Path:
    """``--data-dir`` if given, else ``../shared/data/paraphrase`` beside the
    checkout, then beside the cwd."""
    candidates = [data_dir] if data_dir is not None else [repo_root() / PARAPHRASE_DIR, Path.cwd() / PARAPHRASE_DIR]
    for cand in candidates:
        if (cand / "msrp.jsonl").is_file() and (cand / "sick.jsonl").is_file():
            return cand.resolve()
    raise FailedPrecondition(
        f"paraphrase data not found (tried {', '.join(map(str, candidates))}); pass --data-dir "
        "pointing at the folder that holds msrp.jsonl and sick.jsonl"
    )


def _jsonl(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


FOW_SPLITS = ("train", "test", "all")


def fow_split(rows: list[dict[str, object]]) -> list[str]:
    """Split each fow-cache row into "train" or "test": per category, the groups of
    pairs that share a (normalised) text are ordered by a hash of their first
    id and the first half goes to train, so no text is on both sides."""
    from services.cache.keys import normalize

    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        for text in (normalize(str(r["a"])), normalize(str(r["b"]))):
            parent[root(i)] = root(first.setdefault(text, i))
    groups: dict[int, list[int]] = {}
    for i in range(len(rows)):
        groups.setdefault(root(i), []).append(i)
    out = [""] * len(rows)
    by_category: dict[str, list[list[int]]] = {}
    for members in groups.values():
        by_category.setdefault(str(rows[members[0]]["category"]), []).append(members)
    for comps in by_category.values():
        comps.sort(key=lambda m: hashlib.sha256(str(rows[m[0]]["id"]).encode()).hexdigest())
        total, taken = sum(len(m) for m in comps), 0
        for members in comps:
            side = "train" if taken < total / 2 else "test"
            taken += len(members)
            for i in members:
                out[i] = side
    return out


def fow_questions(split: str = "all") -> list[Pair]:
    from fow_cache.data import load_questions

    if split not in FOW_SPLITS:
        raise InvalidArgument(f"fow-cache has splits {', '.join(FOW_SPLITS)}, not {split!r}")
    rows = list(load_questions())
    sides = fow_split(rows)
    # Ambiguous pairs count as traps (fow-cache's strict default).
    return [
        Pair("fow-cache", side, str(q.get("ambiguous") or q["category"]), str(q["a"]), str(q["b"]),
             bool(q["same_answer"]) and not q.get("ambiguous"))
        for q, side in zip(rows, sides, strict=True) if split in ("all", side)
    ]  # fmt: skip


def fow_conversations(last_message: bool = False) -> list[Pair]:
    """fow-cache's 240 conversation pairs, keyed as the cache keys them (the
    whole conversation, newest turn first) or, for comparison, by the last
    message only. All held out: nothing is fitted or calibrated on them."""
    from fow_cache.data import load_conversations

    from services.cache import keys

    out = []
    for c in load_conversations():
        a, b = (c["a"][-1]["content"], c["b"][-1]["content"]) if last_message else (
            keys.canonical_text(c["a"]), keys.canonical_text(c["b"]))  # fmt: skip
        out.append(Pair("fow-conversations", "test", str(c["subtype"]), a, b, bool(c["same_answer"])))
    return out


def msrp(data_dir: Path, split: str) -> list[Pair]:
    return [
        Pair("msrp", split, "paraphrase" if r["paraphrase"] else "not_paraphrase", str(r["a"]), str(r["b"]),
             bool(r["paraphrase"]))
        for r in _jsonl(data_dir / "msrp.jsonl") if r["split"] == split
    ]  # fmt: skip


def sick(data_dir: Path, split: str) -> list[Pair]:
    out = []
    for r in _jsonl(data_dir / "sick.jsonl"):
        if r["split"] != split:
            continue
        label = str(r["entailment"]).lower()
        if label == "entailment":
            if float(str(r["relatedness"])) < SICK_MIN_RELATEDNESS:
                continue
            out.append(Pair("sick", split, "entailment", str(r["a"]), str(r["b"]), True))
        else:
            out.append(Pair("sick", split, label, str(r["a"]), str(r["b"]), False))
    return out


def operator_pairs(path: Path) -> list[Pair]:
    """An operator's labelled pairs: one JSON object a line with string ``a``
    and ``b`` and boolean ``same_answer``; a precise error for a bad line."""
    if not path.is_file():
        raise InvalidArgument(f"pairs file {path} does not exist")
    out = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidArgument(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise InvalidArgument(f"{path}:{n}: expected an object with a, b, same_answer")
            a, b, same = row.get("a"), row.get("b"), row.get("same_answer")
            if not isinstance(a, str) or not a.strip() or not isinstance(b, str) or not b.strip():
                raise InvalidArgument(f"{path}:{n}: 'a' and 'b' must be non-empty strings")
            if not isinstance(same, bool):
                raise InvalidArgument(f"{path}:{n}: 'same_answer' must be true or false")
            out.append(Pair("operator", "all", str(row.get("group") or ("same" if same else "different")), a, b, same))
    if not out:
        raise InvalidArgument(f"{path} holds no pairs")
    return out


def load(dataset: str, split: str, data_dir: Path | None = None) -> list[Pair]:
    if dataset == "fow-cache":
        return fow_questions(split)
    base = resolve_paraphrase_dir(data_dir)
    if dataset == "msrp":
        return msrp(base, split)
    if dataset == "sick":
        return sick(base, split)
    raise InvalidArgument(f"unknown data set {dataset!r}; known: {', '.join(DATASETS)}")
