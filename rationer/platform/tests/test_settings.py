"""rationer.platform.settings: defaults < TOML section < environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, ValidationError

from rationer.errors import InvalidArgument
from rationer.platform.settings import ServiceSettings, load_settings


class DemoSettings(ServiceSettings):
    backend: str = "sqlite"
    tiers: list[str] = Field(default_factory=list)
    ratio: float = 0.5


def test_precedence_defaults_toml_env(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[demo]\nbackend = "postgres"\nratio = 0.25\n[demo.logging]\nformat = "console"\n'
                   '[other]\nbackend = "ignored"\n')  # fmt: skip
    env = {"RATIONER_DEMO__RATIO": "0.75", "RATIONER_DEMO__LOGGING__FORMAT": "json",
           "RATIONER_DEMO__TIERS": '["a", "b"]', "RATIONER_OTHER__BACKEND": "nope", "UNRELATED": "1"}  # fmt: skip
    s = load_settings(DemoSettings, "demo", toml_path=cfg, environ=env)
    assert s.backend == "postgres"  # from TOML
    assert s.ratio == 0.75  # env beats TOML, JSON-coerced
    assert s.logging.format == "json"  # nested env override keeps the sibling default
    assert s.logging.level == "INFO"
    assert s.tiers == ["a", "b"]
    assert s.listen == "127.0.0.1:0"  # default


def test_bare_env_word_stays_a_string() -> None:
    s = load_settings(DemoSettings, "demo", environ={"RATIONER_DEMO__BACKEND": "postgres"})
    assert s.backend == "postgres"


def test_missing_or_broken_file_and_unknown_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        load_settings(DemoSettings, "demo", toml_path=tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[demo\n")
    with pytest.raises(InvalidArgument, match="not valid TOML"):
        load_settings(DemoSettings, "demo", toml_path=bad)
    with pytest.raises(ValidationError):
        load_settings(DemoSettings, "demo", environ={"RATIONER_DEMO__TYPO": "1"})
    with pytest.raises(ValidationError):
        load_settings(DemoSettings, "demo", environ={"RATIONER_DEMO__LOGGING__FORMAT": "xml"})
