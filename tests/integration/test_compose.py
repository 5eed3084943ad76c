"""Docker cannot run here, so check compose.yaml against the real CLI and settings.

Every container command must be a real ``rationer`` command; every service's
config (deploy/gateway.toml plus the compose environment) must load into its
typed settings; every listen port must be exposed or published; and the
router must point at the services and ports that actually listen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from rationer.cli.main import app
from rationer.errors import InvalidArgument
from rationer.platform.settings import load_settings, read_toml, with_service_token
from services.cache.settings import CacheSettings
from services.ledger.settings import LedgerSettings
from services.router.settings import RouterSettings
from services.slm_worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS: dict[str, tuple[type[BaseModel], str]] = {
    "ledger": (LedgerSettings, "ledger"),
    "cache": (CacheSettings, "cache"),
    "slm-worker": (WorkerSettings, "worker"),
    "router": (RouterSettings, "router"),
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def _rationer_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The four services (``rationer serve ...``); the gateway runs the balancer, no service."""
    return {name: svc for name, svc in compose["services"].items()
            if svc.get("image") == "rationer:latest" and svc["command"][0] == "serve"}  # fmt: skip


def _replicas(svc: dict[str, Any]) -> int:
    return int((svc.get("deploy") or {}).get("replicas", 1))


def _settings(svc: dict[str, Any]) -> Any:
    command = svc["command"]
    cls, section = SETTINGS[command[1]]
    config = ROOT / "deploy" / Path(command[command.index("--config") + 1]).name
    env = {k: str(v) for k, v in (svc.get("environment") or {}).items() if not str(v).startswith("${")}
    return load_settings(cls, section, toml_path=config, environ=env)


def _port(address: str) -> str:
    return address.rsplit(":", 1)[1]


def _open_ports(svc: dict[str, Any]) -> set[str]:
    published = {str(p).split(":")[-1] for p in svc.get("ports", [])}
    return published | {str(p) for p in svc.get("expose", [])}


def test_every_command_is_a_real_cli_command(compose: dict[str, Any]) -> None:
    services = _rationer_services(compose)
    assert set(services) == {"ledger", "cache", "slm_worker", "router"}
    runner = CliRunner()
    for name, svc in [*services.items(), ("gateway", compose["services"]["gateway"])]:
        result = runner.invoke(app, [*svc["command"][:2], "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert ("--config" if name != "gateway" else "--route") in result.output, name


def test_configs_load_and_ports_line_up(compose: dict[str, Any]) -> None:
    services = _rationer_services(compose)
    loaded = {name: _settings(svc) for name, svc in services.items()}
    for name, settings in loaded.items():
        assert _port(settings.listen) in _open_ports(services[name]), name
        if settings.metrics_port is not None:
            assert str(settings.metrics_port) in _open_ports(services[name]), name
    router = loaded["router"]
    # Per-call round robin over every ledger container (a plain name would pin a router to one).
    assert router.ledger_address == f"dns:ledger:{_port(loaded['ledger'].listen)}"
    assert router.cache_address == f"cache:{_port(loaded['cache'].listen)}"
    assert router.worker_addresses == [f"dns:slm_worker:{_port(loaded['slm_worker'].listen)}"]
    assert router.http.enabled and _port(router.http.listen) in _open_ports(services["router"])
    assert not services["router"].get("ports"), "replicas cannot share host ports: the gateway publishes them"
    assert loaded["ledger"].backend == "postgres" and loaded["ledger"].escrow
    assert "postgres:" in loaded["ledger"].postgres_dsn and "redis:" in (loaded["ledger"].redis_url or "")
    tiers = {t.name for t in router.tiers}
    served = {m.tier for m in loaded["slm_worker"].models}
    assert {t.name for t in router.tiers if t.kind == "local"} <= served <= tiers


def test_the_topology_is_the_clusters(compose: dict[str, Any]) -> None:
    """2 routers behind the gateway, 2 ledgers, 3 workers; the cache shared before it is replicated."""
    services = compose["services"]
    assert _replicas(services["router"]) >= 2 and _replicas(services["ledger"]) >= 2
    assert _replicas(services["slm_worker"]) >= 3
    cache = _settings(services["cache"])
    shared = getattr(cache, "backend", "faiss") != "faiss"
    assert _replicas(services["cache"]) >= 2 if shared else _replicas(services["cache"]) == 1, "FAISS is per process"


def test_the_gateway_balances_over_the_ports_the_routers_listen_on(compose: dict[str, Any]) -> None:
    from rationer.balancer import parse_route

    gateway = compose["services"]["gateway"]
    command = gateway["command"]
    assert command[:2] == ["cluster", "balance"] and gateway["depends_on"] == ["router"]
    routes = [parse_route(command[i + 1]) for i, arg in enumerate(command) if arg == "--route"]
    router = _settings(compose["services"]["router"])
    wanted = {int(_port(router.listen)), int(_port(router.http.listen))}
    assert {port for (_, port), _ in routes} == wanted
    assert {str(p).split(":")[0] for p in gateway["ports"]} == {str(p) for p in wanted}
    for (_, port), upstreams in routes:
        assert upstreams == [f"router:{port}"], "one name that resolves to every router container"


def test_persistent_state_sits_on_volumes(compose: dict[str, Any]) -> None:
    cache = compose["services"]["cache"]
    settings = _settings(cache)
    # Entries live in PostgreSQL (pgvector); /data (per container) holds only local files.
    assert settings.backend == "pgvector" and "postgres:" in settings.pg_dsn
    assert "/data" in cache["volumes"] and settings.data_dir.startswith("/data")
    assert compose["services"]["postgres"]["image"].startswith("pgvector/pgvector:")
    assert "ledger-db" in compose["volumes"]
    # The router's settlement journal must outlive the container: an anonymous volume per
    # container (a shared named one would have both replicas open one journal).
    router = compose["services"]["router"]
    journal = _settings(router).settlement_journal
    assert "/data" in router["volumes"] and str(journal).startswith("/data/")
    assert (ROOT / "Dockerfile").exists()


def test_every_service_takes_the_service_token_from_the_environment(compose: dict[str, Any]) -> None:
    """compose refuses to start without RATIONER_SERVICE_TOKEN, and each service then resolves it."""
    for name, svc in _rationer_services(compose).items():
        env = svc.get("environment") or {}
        assert str(env.get("RATIONER_SERVICE_TOKEN", "")).startswith("${RATIONER_SERVICE_TOKEN:?set "), name
        command = svc["command"]
        cls, section = SETTINGS[command[1]]
        config = ROOT / "deploy" / Path(command[command.index("--config") + 1]).name
        assert "service_token" not in read_toml(config).get(section, {}), "no secret in gateway.toml"
        with pytest.raises(InvalidArgument, match="no service token configured"):
            with_service_token(load_settings(cls, section, toml_path=config, environ={}), section)
        token = "compose-test-token-0123456789"
        resolved = with_service_token(
            load_settings(cls, section, toml_path=config, environ={"RATIONER_SERVICE_TOKEN": token}), section
        )
        assert resolved.service_token.get_secret_value() == token, name
