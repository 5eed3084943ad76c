"""``rationer calibrate cache``: operator pairs in, a threshold within the
bound on those pairs out, written into the config without touching the rest."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from rationer.errors import InvalidArgument
from services.cache import calibrate, pairsets
from services.cache.verifier import Verifier
from services.cache.verifier_train import score_pairs, served_scores
from testsupport.cache import shared_embedder


def _write(path: Path, rows: Sequence[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected an object"),
        ({"a": "x", "b": "", "same_answer": True}, "non-empty strings"),
        ({"a": "x", "b": "y", "same_answer": "yes"}, "must be true or false"),
        ({"a": "x", "same_answer": True}, "non-empty strings"),
    ],
)
def test_a_bad_line_is_named_with_its_number(tmp_path: Path, row: object, message: str) -> None:
    path = _write(tmp_path / "p.jsonl", [{"a": "x", "b": "y", "same_answer": True}, row])
    with pytest.raises(InvalidArgument, match=rf"p.jsonl:2: .*{message}"):
        pairsets.operator_pairs(path)


def test_too_few_traps_for_the_bound_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", [{"a": f"q{i}", "b": f"q{i}?", "same_answer": i % 2 == 0} for i in range(20)])
    with pytest.raises(InvalidArgument, match="at least 100 traps"):
        calibrate.run(path, tmp_path / "r.toml", 0.01, write=False, embedder=shared_embedder())


def _fow_sample() -> list[dict[str, object]]:
    qs = pairsets.fow_questions()
    return [{"a": p.a, "b": p.b, "same_answer": p.same_answer} for p in qs[::5]]  # 120 pairs, both kinds


def test_the_written_threshold_keeps_false_hits_within_the_bound(tmp_path: Path) -> None:
    pairs_path = _write(tmp_path / "pairs.jsonl", _fow_sample())
    config = tmp_path / "rationer.toml"
    config.write_text('# my gateway\n[router]\nlisten = "0.0.0.0:8080"\n\n[cache]\nguard = true  # keep\n')
    result = calibrate.run(pairs_path, config, 0.05, embedder=shared_embedder())
    cfg = tomllib.loads(config.read_text())
    assert cfg["cache"]["verifier_threshold"] == result["verifier_threshold"]
    assert cfg["cache"]["max_false_hit_rate"] == 0.05 and cfg["cache"]["guard"] is True
    assert cfg["router"]["listen"] == "0.0.0.0:8080" and config.read_text().startswith("# my gateway\n")
    # Recompute independently: the threshold serves at most 5% of the traps,
    # and the next lower score would have served more.
    pairs = pairsets.operator_pairs(pairs_path)
    s = score_pairs(pairs, shared_embedder())
    scores = served_scores(Verifier().probabilities(s.x), s)
    served = scores >= result["verifier_threshold"]
    assert served[~s.y].mean() <= 0.05 and served[~s.y].mean() == pytest.approx(result["false_hit"], abs=1e-4)
    assert served[s.y].mean() == pytest.approx(result["recall"], abs=1e-4) and result["recall"] > 0.3  # curve: 5 places
    lower = scores[(scores < result["verifier_threshold"]) & (scores > 0)]
    if len(lower):
        assert (scores >= lower.max())[~s.y].mean() > 0.05
    # The cache reads it back as its operating point.
    assert Verifier(threshold=cfg["cache"]["verifier_threshold"]).threshold == result["verifier_threshold"]


def test_the_bound_is_read_from_the_config_when_not_given(tmp_path: Path) -> None:
    config = tmp_path / "rationer.toml"
    config.write_text("[cache]\nmax_false_hit_rate = 0.05\n")
    assert calibrate.configured_bound(config) == 0.05
    assert calibrate.configured_bound(tmp_path / "absent.toml") == 0.01
    pairs_path = _write(tmp_path / "pairs.jsonl", _fow_sample())
    result = calibrate.run(pairs_path, config, None, write=False, embedder=shared_embedder())
    assert result["max_false_hit_rate"] == 0.05 and not result["written"]
    assert "verifier_threshold" not in tomllib.loads(config.read_text())["cache"]
    assert np.isfinite(result["verifier_threshold"])
