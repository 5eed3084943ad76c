"""Typed settings loaded once in each service's ``main``.

Sources, lowest precedence first: the model's defaults, one section of a TOML
file, then environment overrides named ``RATIONER_<SECTION>__<FIELD>`` (nested
fields joined by ``__``). Only ``main`` passes ``os.environ`` in; nothing else
reads the environment.

The service token is shared by every service of a deployment, so it also
comes from one variable for all of them: ``RATIONER_SERVICE_TOKEN`` (or
``RATIONER_SERVICE_TOKEN_FILE``), below the per-section variables.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from rationer.errors import InvalidArgument

ENV_PREFIX = "RATIONER_"
# One variable each for every service (the deployment's shared secret).
SHARED_ENV = {"RATIONER_SERVICE_TOKEN": "service_token", "RATIONER_SERVICE_TOKEN_FILE": "service_token_file",
              "RATIONER_OTLP_ENDPOINT": "otlp_endpoint"}  # fmt: skip
MIN_SERVICE_TOKEN_CHARS = 16
MAX_SERVICE_TOKEN_CHARS = 1024


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
    # The deployment's service token: the router presents it on every call to
    # the ledger, cache and workers, which refuse calls without it. Set one of
    # the two (a file keeps it out of the config and the environment); main
    # refuses to start with neither (resolve_service_token).
    service_token: SecretStr | None = None
    service_token_file: Path | None = None
    # OTLP/gRPC collector for this service's spans ("host:4317", "http://host:4317",
    # "https://host:4317"); "" (the default) leaves tracing off (docs/operations.md, "Traces").
    otlp_endpoint: str = ""

    @field_validator("service_token", mode="before")
    @classmethod
    def _token_is_text(cls, v: object) -> object:
        # Env values are JSON-coerced: a token of digits would become an int.
        return v if v is None or isinstance(v, SecretStr) else str(v)


S = TypeVar("S", bound=BaseModel)


def _coerce(raw: str) -> Any:
    # Env values are strings; JSON lets lists, numbers and booleans through
    # while a bare word stays a string.
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _shared_env(cls: type[BaseModel], environ: Mapping[str, str]) -> dict[str, Any]:
    # Taken verbatim (no JSON coercion): a secret is a string.
    return {field: environ[name] for name, field in SHARED_ENV.items() if name in environ and field in cls.model_fields}


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
    data = _merge(data, _shared_env(cls, environ or {}))
    data = _merge(data, _env_overrides(section, environ or {}))
    data = _merge(data, overrides or {})
    return cls.model_validate(data)


SS = TypeVar("SS", bound=ServiceSettings)


def service_token_of(settings: ServiceSettings) -> str:
    """The token held in ``service_token`` ("" when none is set)."""
    return settings.service_token.get_secret_value() if settings.service_token is not None else ""


def with_service_token(settings: SS, section: str) -> SS:
    """``settings`` with the token resolved into ``service_token`` (file read).

    For ``main``: a service without a valid token refuses to start; the
    ``InvalidArgument`` says how to configure one.
    """
    token = resolve_service_token(settings, section)
    return settings.model_copy(update={"service_token": SecretStr(token), "service_token_file": None})


def load_service_settings(cls: type[SS], section: str, config: Path | None, environ: Mapping[str, str]) -> SS:
    """For a service's ``main``: its settings with the service token resolved.

    A missing or bad token (or file) ends the process with one line saying
    how to configure it, instead of a service that refuses every call.
    """
    try:
        return with_service_token(load_settings(cls, section, toml_path=config, environ=environ), section)
    except InvalidArgument as exc:
        raise SystemExit(f"{section}: refusing to start: {exc.message}") from None


def resolve_service_token(settings: ServiceSettings, service: str) -> str:
    """The service token from ``service_token`` or ``service_token_file``.

    Called once by each service's ``main`` (it may read a file). Raises
    ``InvalidArgument`` saying how to configure one; never echoes the value.
    """
    hint = (
        f"set RATIONER_SERVICE_TOKEN (the same value for the router, ledger, cache and every worker) or "
        f"service_token_file in [{service}]; `rationer up` generates one in <data dir>/service_token, or make "
        "one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )
    token_set = settings.service_token is not None
    if token_set and settings.service_token_file is not None:
        raise InvalidArgument(f"set service_token or service_token_file in [{service}], not both")
    if settings.service_token is not None:
        token = settings.service_token.get_secret_value()
        source = "service_token"
    elif settings.service_token_file is not None:
        source = f"service_token_file {settings.service_token_file}"
        try:
            token = Path(settings.service_token_file).expanduser().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"cannot read the {source}: {exc}") from None
    else:
        raise InvalidArgument(f"no service token configured; {hint}")
    if not (MIN_SERVICE_TOKEN_CHARS <= len(token) <= MAX_SERVICE_TOKEN_CHARS) or not all(
        "!" <= ch <= "~" for ch in token
    ):
        raise InvalidArgument(
            f"the {source} must be {MIN_SERVICE_TOKEN_CHARS} to {MAX_SERVICE_TOKEN_CHARS} printable "
            f"ASCII characters without spaces (it has {len(token)} characters); {hint}"
        )
    return token
