"""Typed settings loaded once in each service's ``main``.

Sources, lowest precedence first: the model's defaults, one section of a TOML
file, then environment overrides named ``RATIONER_<SECTION>__<FIELD>`` (nested
fields joined by ``__``). Only ``main`` passes ``os.environ`` in; nothing else
reads the environment.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from rationer.errors import InvalidArgument

ENV_PREFIX = "RATIONER_"


class LoggingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["console", "json"] = "console"
    level: str = "INFO"


class ServiceSettings(BaseModel):
    """Fields every service has."""

    model_config = ConfigDict(extra="forbid")

    listen: str = "127.0.0.1:0"
    # Prometheus /metrics port; None disables the endpoint, 0 picks a free port.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    grace_period_s: float = 10.0
    logging: LoggingSettings = LoggingSettings()


S = TypeVar("S", bound=BaseModel)


def _coerce(raw: str) -> Any:
    # Env values are strings; JSON lets lists, numbers and booleans through
    # while a bare word stays a string.
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _env_overrides(section: str, environ: Mapping[str, str]) -> dict[str, Any]:
    prefix = f"{ENV_PREFIX}{section.upper()}__"
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(prefix):
            continue
        path = [p.lower() for p in name[len(prefix) :].split("__") if p]
        if not path:
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _coerce(raw)
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidArgument(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"config file {path} is not valid TOML: {exc}") from exc


def load_settings(
    cls: type[S],
    section: str,
    *,
    toml_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> S:
    """Build ``cls`` from ``[section]`` of the TOML file plus env overrides."""
    data: dict[str, Any] = read_toml(toml_path).get(section, {})
    data = _merge(data, _env_overrides(section, environ or {}))
    data = _merge(data, overrides or {})
    return cls.model_validate(data)
