"""``rationer bench peer`` without LiteLLM: direct and Rationer run, the peer is reported unavailable.

Tiny numbers and no wall-clock assertions: only the result's shape is checked.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from bench import peer
from rationer.cli.bench_peer import _print


def _python_without_site_packages(tmp_path: Path) -> str:
    """This interpreter with site-packages off (-S): LiteLLM is absent from it even where it is installed."""
    script = tmp_path / "python-bare"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')
    script.chmod(0o755)
    return str(script)


def test_a_missing_interpreter_is_reported_with_the_fix(tmp_path: Path) -> None:
    version, reason = peer.litellm_version(str(tmp_path / "nope" / "python"))
    assert version == ""
    assert "does not exist" in reason and "--litellm-python" in reason and ".[peer]" in reason


def test_the_lightest_litellm_config_has_no_database_and_no_cache() -> None:
    cfg = peer.litellm_config(1234)
    assert "database_url" not in cfg["general_settings"]
    assert cfg["litellm_settings"]["cache"] is False
    (model,) = cfg["model_list"]
    assert model["litellm_params"]["api_base"] == "http://127.0.0.1:1234/v1"


@pytest.mark.timeout(240)
def test_without_litellm_direct_and_rationer_still_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = asyncio.run(peer.run_bench(litellm_python=_python_without_site_packages(tmp_path), requests_c1=6,
                                        duration_c32=0.3, concurrency=4, warmup=1, rounds=1))  # fmt: skip
    result = json.loads(json.dumps(result))  # what --json prints
    setup = result["setup"]
    assert setup["litellm_available"] is False
    assert "litellm[proxy] is not importable" in setup["litellm_unavailable_reason"]
    assert ".[peer]" in setup["litellm_unavailable_reason"]
    for level, concurrency in (("c1", 1), ("c32", 4)):
        r = result[level]
        assert set(r) == {"direct", "rationer", "rationer_vs_direct"}
        for path in ("direct", "rationer"):
            assert r[path]["requests"] > 0 and r[path]["concurrency"] == concurrency
            assert {"rps", "p50_ms", "p99_ms"} <= set(r[path])
        assert set(r["rationer_vs_direct"]) == {"added_p50_ms", "added_p99_ms"}
    assert result["c1"]["rationer"]["requests"] == 6
    assert result["ratios_rationer_over_litellm"] is None and result["meets_targets"] is None
    assert result["targets"] == {"added_p50_ratio_max": 0.5, "rps_ratio_min": 5.0}
    _print(result)  # the table the command prints without --json
    out = capsys.readouterr().out
    assert "litellm: unavailable: litellm[proxy] is not importable" in out
    assert "rationer" in out and "Rationer/LiteLLM" not in out
