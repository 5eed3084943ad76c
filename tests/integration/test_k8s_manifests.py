"""deploy/k8s checked offline: schemas, and agreement with the code and compose.yaml.

No cluster here, so each overlay is rendered by kustomize_lite (the subset of
kustomize the overlays use; it refuses anything else), compared with
``kubectl kustomize`` where kubectl is installed (no cluster needed), and every
document is validated against the Kubernetes JSON schemas bundled in
``kubernetes-validate`` (strict: unknown fields fail). The KEDA ScaledObject is
a CRD those schemas lack; it is checked against schemas/keda-scaledobject-v1alpha1.json,
a small structural schema written from KEDA's docs. Then the manifests must say
what the code does: the gateway.toml and env overrides load into each service's
real settings class, probes and Services hit the ports those settings listen
on, commands and the image are compose.yaml's, and the autoscaler queries name
metrics the worker really exports.
"""

from __future__ import annotations

import collections
import inspect
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from typer.testing import CliRunner

from rationer.cli.main import app
from rationer.errors import InvalidArgument
from rationer.platform.settings import load_settings, with_service_token
from services.cache.settings import CacheSettings
from services.ledger.settings import LedgerSettings
from services.router.pipeline import RouterCore
from services.router.settings import RouterSettings
from services.slm_worker.metrics import DEFERRED, QUEUE_DEPTH, WorkerLoadCollector
from services.slm_worker.pool import PoolLoad
from services.slm_worker.settings import WorkerSettings
from services.slm_worker.worker import ModelStatus, Worker
from tests.integration.k8s_pods import container as _container
from tests.integration.k8s_pods import one as _one
from tests.integration.k8s_pods import pod_settings
from tests.integration.k8s_pods import port as _port
from tests.integration.k8s_pods import ports as _ports
from tests.integration.kustomize_lite import Doc, render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
# gRPC probes are GA since 1.27; check the oldest release we document and the
# newest the package bundles.
K8S_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
KEDA_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "keda-scaledobject-v1alpha1.json").read_text())
# Deployment -> (compose service, settings class, TOML section).
SERVICES: dict[str, tuple[str, type[BaseModel], str]] = {
    "rationer-ledger": ("ledger", LedgerSettings, "ledger"),
    "rationer-cache": ("cache", CacheSettings, "cache"),
    "rationer-worker": ("slm_worker", WorkerSettings, "worker"),
    "rationer-router": ("router", RouterSettings, "router"),
}
TOKEN = "k8s-test-service-token-0123456789"


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {name: render(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def _settings(docs: list[Doc], deployment: str, tmp: Path, secrets: dict[str, str] | None = None) -> Any:
    return pod_settings(docs, deployment, SERVICES[deployment][1:], tmp, secrets)


def _filled(docs: list[Doc], deployment: str, tmp: Path) -> Any:
    settings = _settings(docs, deployment, tmp, {"service-token": TOKEN, "admin-token": "admin-" + TOKEN})
    return with_service_token(settings, SERVICES[deployment][2])


# ---- schemas ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_document_validates_against_its_schema(rendered: dict[str, list[Doc]], overlay: str) -> None:
    kinds = set()
    for doc in rendered[overlay]:
        kinds.add(doc["kind"])
        if doc["kind"] == "ScaledObject":
            jsonschema.validate(doc, KEDA_SCHEMA)
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
    assert {"Deployment", "Service", "ConfigMap", "Secret"} <= kinds


def test_the_validators_reject_broken_documents(rendered: dict[str, list[Doc]]) -> None:
    """The checks above are not vacuous: a typo and a wrong type both fail."""
    docs = rendered["scale"]
    typo = json.loads(json.dumps(_one(docs, "Deployment", "rationer-router")))
    typo["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSIONS[0], strict=True)
    bad_probe = json.loads(json.dumps(_one(docs, "Deployment", "rationer-router")))
    bad_probe["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad_probe, K8S_VERSIONS[0], strict=True)
    scaled = json.loads(json.dumps(_one(docs, "ScaledObject", "rationer-worker")))
    scaled["spec"]["triggers"][0]["metadata"]["threshold"] = 2  # KEDA wants a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, KEDA_SCHEMA)


def test_the_renderer_sets_images_and_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    kustomization = {"resources": [str(K8S / "base")], "images": [{"name": "rationer", "newName": "r.example/rationer",
                     "newTag": "v1"}]}  # fmt: skip
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    assert _container(render(overlay), "rationer-worker")["image"] == "r.example/rationer:v1"
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({**kustomization, "commonLabels": {"a": "b"}}))
    with pytest.raises(ValueError, match="does not implement"):
        render(overlay)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_reference_resolves(rendered: dict[str, list[Doc]], overlay: str) -> None:
    """What the schemas cannot see: names that must exist elsewhere in the overlay."""
    docs = rendered[overlay]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    secrets = {d["metadata"]["name"]: set(d["stringData"]) for d in docs if d["kind"] == "Secret"}
    assert ("Namespace", "rationer") in names
    assert all(d["metadata"].get("namespace") == "rationer" for d in docs if d["kind"] != "Namespace")
    for workload in (d for d in docs if d["kind"] in ("Deployment", "StatefulSet")):
        spec, name = workload["spec"], workload["metadata"]["name"]
        pod = spec["template"]["spec"]
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items(), name
        claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
        volumes = {v["name"] for v in pod.get("volumes", [])} | claims
        for v in pod.get("volumes", []):
            if "configMap" in v:
                assert ("ConfigMap", v["configMap"]["name"]) in names, (name, v)
            if "secret" in v:
                assert v["secret"]["secretName"] in secrets, (name, v)
            if "persistentVolumeClaim" in v:
                assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in names, (name, v)
        for container in pod["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, (name, mount)
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets.get(ref["name"], set()), (name, var)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_renderer_agrees_with_kubectl_kustomize(rendered: dict[str, list[Doc]], overlay: str) -> None:
    """Where kubectl exists (it needs no cluster for this), its kustomize must render the same documents."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; kustomize_lite alone renders the overlays")
    out = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=120, check=True).stdout  # fmt: skip
    real = [d for d in yaml.safe_load_all(out) if d]
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(real, key=key) == sorted(rendered[overlay], key=key)


# ---- agreement with compose.yaml and the Dockerfile ------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_image_and_commands_are_the_ones_compose_runs(
    rendered: dict[str, list[Doc]], compose: dict[str, Any], overlay: str
) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["rationer"]' in dockerfile  # so k8s `args` are compose's `command`
    base = render(K8S / "base")
    for deployment, (service, _, _) in SERVICES.items():
        assert _container(base, deployment)["image"] == compose["services"][service]["image"] == "rationer:latest"
        container = _container(rendered[overlay], deployment)
        # An overlay may point at a registry (`images:`), never at another image.
        assert re.fullmatch(r"([^/]+/)*rationer(:[\w.-]+|@sha256:[0-9a-f]{64})?", container["image"]), deployment
        assert "command" not in container, "keep the image's ENTRYPOINT"
        assert container["args"] == compose["services"][service]["command"], deployment
        result = CliRunner().invoke(app, [*container["args"][:2], "--help"])  # a real `rationer` command
        assert result.exit_code == 0 and "--config" in result.output, (deployment, result.output)


def test_k8s_and_compose_listen_on_the_same_ports(rendered: dict[str, list[Doc]], tmp_path: Path) -> None:
    compose_toml = ROOT / "deploy" / "gateway.toml"
    for deployment, (_, cls, section) in SERVICES.items():
        ours = _filled(rendered["scale"], deployment, tmp_path)
        theirs = load_settings(cls, section, toml_path=compose_toml, environ={})
        assert _port(ours.listen) == _port(theirs.listen), deployment
        assert ours.metrics_port == theirs.metrics_port, deployment
    router = _settings(rendered["scale"], "rationer-router", tmp_path)
    compose_router = load_settings(RouterSettings, "router", toml_path=compose_toml, environ={})
    assert _port(router.http.listen) == _port(compose_router.http.listen)
    assert router.tiers == compose_router.tiers
    worker = _settings(rendered["scale"], "rationer-worker", tmp_path)
    assert worker.models == load_settings(WorkerSettings, "worker", toml_path=compose_toml, environ={}).models


# ---- agreement with the code -----------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_env_load_into_the_real_settings(
    rendered: dict[str, list[Doc]], overlay: str, tmp_path: Path
) -> None:
    """extra="forbid" on every settings model: a misspelt TOML key or env override fails here."""
    docs = rendered[overlay]
    for deployment in SERVICES:
        settings = _filled(docs, deployment, tmp_path)
        assert settings.service_token.get_secret_value() == TOKEN, deployment
        container = _container(docs, deployment)
        for var in container.get("env", []):
            assert var["name"].startswith("RATIONER_") or var["name"] == "PGPASSWORD", var
        ports = _ports(container)
        assert ports["grpc"] == _port(settings.listen), deployment
        assert settings.listen.startswith("0.0.0.0:") and settings.metrics_host == "0.0.0.0", deployment
        assert ports["metrics"] == settings.metrics_port, deployment
        annotations = _one(docs, "Deployment", deployment)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(settings.metrics_port), deployment
    ledger = _filled(docs, "rationer-ledger", tmp_path)
    assert ledger.admin_token == "admin-" + TOKEN
    router = _filled(docs, "rationer-router", tmp_path)
    assert router.http.enabled and _ports(_container(docs, "rationer-router"))["http"] == _port(router.http.listen)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_the_health_services(rendered: dict[str, list[Doc]], overlay: str, tmp_path: Path) -> None:
    docs = rendered[overlay]
    for deployment in SERVICES:
        settings = _filled(docs, deployment, tmp_path)
        container = _container(docs, deployment)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container[kind]
            if "grpc" in probe:  # grpc.health.v1, served by every service without the token
                assert probe["grpc"]["port"] == _port(settings.listen), (deployment, kind)
                assert "service" not in probe["grpc"], "the overall status ('') is what set_serving flips"
            else:
                assert deployment == "rationer-router" and kind == "readinessProbe", (deployment, kind)
                assert probe["httpGet"] == {"path": "/readyz", "port": _port(settings.http.listen)}
        # SIGTERM drains first: the pod must get longer than the service's own grace.
        grace = _one(docs, "Deployment", deployment)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        drain = settings.grace_period_s
        if deployment == "rationer-router":  # HTTP door, then pending settlements, then gRPC
            settle = inspect.signature(RouterCore.drain).parameters["timeout_s"].default
            drain += settings.http.shutdown_timeout_s + settle
        assert grace > drain, (deployment, grace, drain)
    # The path the readiness probe asks for is one the router's HTTP door serves.
    front_door = (ROOT / "services" / "router" / "http" / "app.py").read_text()
    assert re.search(r'for path in \("/ready", "/readyz"\):\s+app\.router\.add_get\(path, self\.ready\)', front_door)
    server = (ROOT / "rationer" / "platform" / "server.py").read_text()
    assert "add_HealthServicer_to_server" in server
    interceptor = (ROOT / "rationer" / "platform" / "interceptor.py").read_text()
    assert '"/grpc.health."' in interceptor  # kubelet presents no service token


def _service_for(docs: list[Doc], host: str, port: int, deployment: str) -> Doc:
    """The Service named ``host``: selects ``deployment`` and maps ``port`` to a port it listens on."""
    service = _one(docs, "Service", host)
    labels = _one(docs, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items(), host
    named = _ports(_container(docs, deployment))
    mapped = {p["port"]: named.get(p["targetPort"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert port in mapped and mapped[port] in named.values(), (host, port, mapped)
    return service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_reach_the_pods_the_router_calls(rendered: dict[str, list[Doc]], overlay: str, tmp_path: Path) -> None:
    docs = rendered[overlay]
    for deployment in SERVICES:  # every Service port lands on a named container port
        settings = _filled(docs, deployment, tmp_path)
        _service_for(docs, deployment, _port(settings.listen), deployment)
    router = _filled(docs, "rationer-router", tmp_path)
    ledger_host, _, ledger_port = router.ledger_address.removeprefix("dns:").rpartition(":")
    ledgers = _service_for(docs, ledger_host, int(ledger_port), "rationer-ledger")
    if router.ledger_address.startswith("dns:"):  # round robin needs one record per pod
        assert ledgers["spec"]["clusterIP"] == "None", "a ClusterIP would hide the ledger pods"
    cache_host, _, cache_port = router.cache_address.rpartition(":")
    _service_for(docs, cache_host, int(cache_port), "rationer-cache")
    [workers] = router.worker_addresses
    assert workers.startswith("dns:"), "one address per worker pod, re-resolved as they come and go"
    worker_host, _, worker_port = workers[4:].rpartition(":")
    headless = _service_for(docs, worker_host, int(worker_port), "rationer-worker")
    assert headless["spec"]["clusterIP"] == "None", "a ClusterIP would hide the worker pods from discovery"
    served = {m.tier for m in _settings(docs, "rationer-worker", tmp_path).models}
    assert {t.name for t in router.tiers if t.kind == "local"} <= served


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_placeholder_secrets_cannot_start_anything(
    rendered: dict[str, list[Doc]], overlay: str, tmp_path: Path
) -> None:
    docs = rendered[overlay]
    for secret in (d for d in docs if d["kind"] == "Secret"):
        assert set(secret["stringData"].values()) == {""}, f"{secret['metadata']['name']} must ship no secret"
    for deployment, (_, _, section) in SERVICES.items():
        if deployment == "rationer-ledger":
            with pytest.raises(InvalidArgument, match=r"admin_token_file file .* is empty"):
                _settings(docs, deployment, tmp_path)
            continue
        with pytest.raises(InvalidArgument, match="service_token_file"):
            with_service_token(_settings(docs, deployment, tmp_path), section)
    with pytest.raises(InvalidArgument, match="service_token_file"):
        with_service_token(_settings(docs, "rationer-ledger", tmp_path, {"admin-token": "x" * 32}), "ledger")


# ---- autoscaling and topology ----------------------------------------------------------


def _exported_worker_metrics() -> set[str]:
    """Every sample name the worker's /metrics has, from its real collector."""
    load = PoolLoad(slots=1, busy_slots=0, free_slots=1, queue_depth=0, queue_capacity=8, recent_tokens_per_second=0)
    status = ModelStatus("m", "local-small", 512, "Q4_1", "cpu", "gguf", load)
    models = {"m": SimpleNamespace(pool=SimpleNamespace(deferred=collections.Counter[str]()))}
    worker = SimpleNamespace(list_models=lambda: [status], model=lambda name: models[name])
    registry = CollectorRegistry()
    registry.register(WorkerLoadCollector(cast(Worker, worker)))
    return {s.name for family in registry.collect() for s in family.samples}


def test_autoscalers_target_real_workloads_and_metrics(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["scale"]
    hpa = _one(docs, "HorizontalPodAutoscaler", "rationer-router")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "rationer-router")
    assert _container(docs, "rationer-router")["resources"]["requests"]["cpu"], "a CPU target needs a CPU request"
    assert hpa["spec"]["minReplicas"] >= 2
    scaled = _one(docs, "ScaledObject", "rationer-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "rationer-worker"
    _one(docs, "Deployment", "rationer-worker")
    others = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler" and d is not hpa]
    assert not others, "KEDA owns the worker Deployment's HPA"
    exported = _exported_worker_metrics()
    queried = set()
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "prometheus"
        names = set(re.findall(r"\brationer_[a-z_]+", trigger["metadata"]["query"]))
        assert names and names <= exported, (names, sorted(exported))
        queried |= names
    assert {QUEUE_DEPTH, f"{DEFERRED}_total"} <= queried
    assert not any(d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject") for d in rendered["embedded-sqlite"])


def _replicas(docs: list[Doc]) -> dict[str, int]:
    return {name: _one(docs, "Deployment", name)["spec"]["replicas"] for name in SERVICES}


def test_embedded_sqlite_is_one_of_each_with_the_ledger_on_a_volume(
    rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    docs = rendered["embedded-sqlite"]
    assert set(_replicas(docs).values()) == {1}
    ledger = _settings(docs, "rationer-ledger", tmp_path, {"admin-token": "a" * 32})
    assert ledger.backend == "sqlite" and ledger.redis_url is None
    deployment = _one(docs, "Deployment", "rationer-ledger")
    pod = deployment["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if str(ledger.sqlite_path).startswith(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume == {"name": "data", "persistentVolumeClaim": {"claimName": "rationer-ledger-data"}}
    _one(docs, "PersistentVolumeClaim", "rationer-ledger-data")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "one SQLite writer at a time"


def test_scale_runs_replicas_on_postgres_and_redis(rendered: dict[str, list[Doc]], tmp_path: Path) -> None:
    docs = rendered["scale"]
    replicas = _replicas(docs)
    assert replicas["rationer-router"] >= 2 and replicas["rationer-ledger"] >= 2 and replicas["rationer-worker"] >= 2
    ledger = _settings(docs, "rationer-ledger", tmp_path, {"admin-token": "a" * 32})
    assert ledger.backend == "postgres"
    pg_host = re.match(r"postgresql://[^@]+@([^:/]+):(\d+)/", ledger.postgres_dsn)
    assert pg_host and ":" not in ledger.postgres_dsn.split("@")[0][len("postgresql://") :], "no password in the DSN"
    pg = _one(docs, "StatefulSet", pg_host[1])["spec"]["template"]["spec"]["containers"][0]
    assert int(pg_host[2]) in {p["containerPort"] for p in pg["ports"]}
    _one(docs, "Service", pg_host[1])
    redis_host = re.match(r"redis://([^:/]+):(\d+)/", ledger.redis_url or "")
    assert redis_host, "rate limits must be shared by the ledger replicas"
    _one(docs, "Service", redis_host[1])
    env = {v["name"]: v for v in _container(docs, "rationer-ledger")["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "rationer-postgres"
