"""Calibration: prompt files, the share -> threshold rule, and the TOML edit."""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import structlog
from typer.testing import CliRunner

from rationer.classifier.calibrate import read_prompts, threshold_for_share, update_config_text
from rationer.errors import FailedPrecondition, InvalidArgument


def test_reads_jsonl_prompt_messages_and_plain_text(tmp_path: Path) -> None:
    jl = tmp_path / "p.jsonl"
    jl.write_text(
        json.dumps({"prompt": "a"})
        + "\n\n"
        + json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "b"}]})
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "c"}]}]})
        + "\n"
    )
    assert read_prompts(jl) == ["a", "b", "c"]
    txt = tmp_path / "p.txt"
    txt.write_text("first prompt\n\nsecond prompt\n")
    assert read_prompts(txt) == ["first prompt", "second prompt"]


def test_a_synthesized_trace_is_read_as_is(tmp_path: Path) -> None:
    from rationer.replay.synth import SynthConfig, load_pools, synthesize
    from rationer.replay.trace import write_trace

    trace = tmp_path / "trace.jsonl"
    write_trace(trace, *synthesize(SynthConfig(requests=20, seed=3), load_pools(None)))
    assert json.loads(trace.read_text().splitlines()[0]).keys() == {"header"}
    prompts = read_prompts(trace)
    assert len(prompts) == 20 and all(p.strip() for p in prompts)
    only_header = tmp_path / "header.jsonl"
    only_header.write_text(trace.read_text().splitlines()[0] + "\n")
    with pytest.raises(InvalidArgument, match="only a trace header"):
        read_prompts(only_header)


def test_bad_prompt_files_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(InvalidArgument, match="line 2"):
        read_prompts(bad)
    bad.write_text('{"prompt": "ok"}\n{not json\n')
    with pytest.raises(InvalidArgument, match="line 2 is not valid JSON"):
        read_prompts(bad)
    with pytest.raises(InvalidArgument, match="does not exist"):
        read_prompts(tmp_path / "missing.txt")


def test_threshold_sends_the_requested_share() -> None:
    scores = np.linspace(0, 1, 101)
    for share in (0.1, 0.3, 0.55, 1.0):
        t = threshold_for_share(scores, share)
        assert np.mean(scores >= t) == pytest.approx(share, abs=0.01)
    with pytest.raises(InvalidArgument):
        threshold_for_share(scores, 0.0)
    with pytest.raises(InvalidArgument):
        threshold_for_share(scores, 1.5)


CONFIG = """# operator's comment
[ledger]
url = "sqlite:///x.db"  # keep me

[router]
# why 0.5
strong_threshold = 0.5
other = 1

[cache]
enabled = true
"""


def test_updates_only_the_threshold_line() -> None:
    out = update_config_text(CONFIG, 0.123, "note")
    assert tomllib.loads(out)["router"] == {"strong_threshold": 0.123, "other": 1}
    assert out.replace("strong_threshold = 0.123  # note", "strong_threshold = 0.5") == CONFIG


def test_adds_key_or_section_when_missing() -> None:
    no_key = CONFIG.replace("strong_threshold = 0.5\n", "")
    assert tomllib.loads(update_config_text(no_key, 0.25))["router"]["strong_threshold"] == 0.25
    no_section = '[ledger]\nurl = "x"\n'
    out = update_config_text(no_section, 0.25)
    assert tomllib.loads(out) == {"ledger": {"url": "x"}, "router": {"strong_threshold": 0.25}}
    assert tomllib.loads(update_config_text("", 0.7)) == {"router": {"strong_threshold": 0.7}}


def test_refuses_configs_it_cannot_edit_safely() -> None:
    with pytest.raises(FailedPrecondition, match="by hand"):
        update_config_text("router.other = 1\n", 0.3)
    with pytest.raises(InvalidArgument, match="not valid TOML"):
        update_config_text("[router\n", 0.3)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    # The command configures structlog/logging to the runner's temporary stderr;
    # put the previous configuration back so later tests do not log to a closed file.
    saved, handlers = structlog.get_config(), logging.getLogger().handlers[:]
    yield
    structlog.configure(**saved)
    logging.getLogger().handlers[:] = handlers


@pytest.mark.usefixtures("restore_logging")
def test_cli_calibrates_on_real_prompts(tmp_path: Path) -> None:
    from rationer.cli.main import app

    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "\n".join(
            f"Question {i}: what is {i} times {i + 3}? Explain step by step." if i % 3 else f"Say hi {i}"
            for i in range(20)
        )
    )
    config = tmp_path / "router.toml"
    config.write_text('[router]\nlisten = "127.0.0.1:0"\n')
    result = CliRunner().invoke(
        app,
        ["calibrate", "router", "--prompts", str(prompts), "--strong-share", "0.3", "--config", str(config), "--json"],
    )
    if result.exit_code == 2 and "embedder model not found" in result.output:
        pytest.skip("embedder not exported on this machine")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["prompts"] == 20
    assert report["achieved_strong_share"] == pytest.approx(0.3)
    written = tomllib.loads(config.read_text())["router"]
    assert written == {"listen": "127.0.0.1:0", "strong_threshold": report["strong_threshold"]}


def test_quality_threshold_is_the_cheapest_that_keeps_the_target() -> None:
    from rationer.classifier.calibrate import threshold_for_quality

    scores = np.array([0.9, 0.8, 0.8, 0.5, 0.2, 0.1])
    weak = np.array([0, 0, 1, 1, 1, 0], dtype=bool)
    strong = np.array([1, 1, 1, 1, 1, 0], dtype=bool)
    # Strong-only quality 5/6; weak-only 3/6. One strong call gives 4/6 (80%),
    # the tied pair at 0.8 gives 5/6 (100%): 0.95 needs the pair, 0.8 only the top.
    assert threshold_for_quality(scores, weak, strong, 0.95) == (0.8, 0.5)
    t, share = threshold_for_quality(scores, weak, strong, 0.8)
    assert t == 0.9 and share == pytest.approx(1 / 6)
    with pytest.raises(InvalidArgument):
        threshold_for_quality(scores, weak, strong, 1.5)


@pytest.mark.usefixtures("restore_logging")
def test_cli_quality_mode_on_a_labelled_trace(tmp_path: Path) -> None:
    from rationer.cli.main import app

    lines = [json.dumps({"header": {"name": "t"}})]
    for i in range(40):
        hard = i % 4 == 0
        text = f"Prove that the series sum of 1/n^{i % 5 + 2} converges, with bounds." if hard else f"Say hi {i}"
        lines.append(json.dumps({"messages": [{"role": "user", "content": text}],
                                 "labels": {"weak_ok": not hard, "strong_ok": True}}))  # fmt: skip
    lines.append(json.dumps({"prompt": "unlabelled, skipped"}))
    prompts = tmp_path / "trace.jsonl"
    prompts.write_text("\n".join(lines) + "\n")
    config = tmp_path / "router.toml"
    args = ["calibrate", "router", "--prompts", str(prompts), "--quality", "0.95", "--config", str(config), "--json"]
    result = CliRunner().invoke(app, args)
    if result.exit_code == 2 and "embedder model not found" in result.output:
        pytest.skip("embedder not exported on this machine")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["prompts"] == 40
    assert report["achieved_quality_vs_strong_only"] >= 0.95
    # The config holds exactly the threshold the report describes.
    assert tomllib.loads(config.read_text())["router"]["strong_threshold"] == report["strong_threshold"]
    both = CliRunner().invoke(app, [*args, "--strong-share", "0.3"])
    assert both.exit_code == 2 and "exactly one" in both.output
