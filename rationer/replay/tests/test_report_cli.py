"""Report rendering and the CLI commands (typer runner, real files)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from rationer.cli.main import app
from rationer.replay.report import write_report
from rationer.replay.summary import summarize
from rationer.replay.tests.records import rec, result

PNG = b"\x89PNG\r\n\x1a\n"


def _result() -> dict[str, object]:
    recs = [rec(i, f"g{i % 5}", tier="frontier" if i % 3 == 0 else "local", ts=i * 3600.0, complexity=i / 40,
                weak=i % 4 != 0, strong=True, team=f"t{i % 2}", hit=i >= 10 and i % 5 == 0,
                text=f"answer-g{i % 5}-frontier" if i >= 10 and i % 5 == 0 else "") for i in range(24)]  # fmt: skip
    res = result(recs, duration_s=86_400)
    res["ledger"] = {"check": {"replay_requests": 24, "ledger_requests": 24, "replay_cost_nano_usd": 5,
                               "ledger_cost_nano_usd": 5, "teams_match": True, "match": True}}  # fmt: skip
    return res


def test_report_markdown_and_plots(tmp_path: Path) -> None:
    s = summarize(_result())
    written = write_report(s, tmp_path / "docs" / "r.md", tmp_path / "img", prefix="x")
    for name in ("cost", "curve", "tiers"):
        assert Path(written["plots"][name]).read_bytes()[:8] == PNG
    md = (tmp_path / "docs" / "r.md").read_text()
    assert "](../img/x_curve.png)" in md
    assert "-> match" in md
    gw = s["policies"]["gateway"]["cost_nano_usd"] / 1e9
    assert f"${gw:,.4f}" in md
    assert len(s["series"]["outcomes"]) == 24 and sum(sum(b.values()) for b in s["series"]["outcomes"]) == 24


def test_cli_synth_import_report(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["trace", "synth", "--out", str(tmp_path / "t.jsonl"), "--requests", "30", "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.stdout)
    assert info["requests"] == 30 and len((tmp_path / "t.jsonl").read_text().splitlines()) == 31

    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}) + "\n")
    out = runner.invoke(app, ["trace", "import", str(log), "--out", str(tmp_path / "i.jsonl"), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == {"trace": str(tmp_path / "i.jsonl"), "requests": 1, "skipped": {"not_chat": 0}}

    (tmp_path / "res.json").write_text(json.dumps(_result()))
    out = runner.invoke(app, ["report", "replay", str(tmp_path / "res.json"), "--out", str(tmp_path / "r.md"),
                              "--json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["requests"] == 24 and doc["ledger_check"]["match"] is True
    assert (tmp_path / "replay_curve.png").exists()


def test_cli_rejects_bad_speed(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(json.dumps({"ts": 0, "org": "o", "team": "t", "user": "u",
                                                  "messages": [{"role": "user", "content": "x"}]}) + "\n")  # fmt: skip
    out = CliRunner().invoke(app, ["bench", "replay", str(tmp_path / "t.jsonl"), "--speed", "fast"])
    assert out.exit_code != 0
    assert "--speed must be 'max' or a positive factor" in str(out.exception)
