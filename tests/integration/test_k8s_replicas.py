"""The deploy/k8s cache and ledger settings for replicas (issue 16), rendered like test_k8s_manifests.py.

The embedded overlay keeps one FAISS cache; `scale` runs 2+ caches on the
shared pgvector backend (no volume claim, a PostgreSQL image with pgvector)
and its ledgers with budget escrow, slices named by the pod.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from services.cache.settings import CacheSettings
from services.ledger.settings import LedgerSettings
from services.router.settings import RouterSettings
from tests.integration.k8s_pods import container as _container
from tests.integration.k8s_pods import one as _one
from tests.integration.k8s_pods import pod_settings
from tests.integration.kustomize_lite import Doc, render

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {name: render(K8S / "overlays" / name) for name in ("embedded-sqlite", "scale")}


def _settings(docs: list[Doc], deployment: str, tmp: Path, secrets: dict[str, str] | None = None) -> Any:
    section: dict[str, tuple[type[BaseModel], str]] = {
        "rationer-cache": (CacheSettings, "cache"), "rationer-ledger": (LedgerSettings, "ledger"),
        "rationer-router": (RouterSettings, "router"),
    }  # fmt: skip
    return pod_settings(docs, deployment, section[deployment], tmp, secrets)


def test_embedded_cache_stays_a_single_replica(rendered: dict[str, list[Doc]]) -> None:
    """Embedded FAISS has its own index per process: a second replica would halve hits (docs/deploy.md)."""
    docs = rendered["embedded-sqlite"]
    cache = _one(docs, "Deployment", "rationer-cache")
    assert cache["spec"]["replicas"] == 1 and cache["spec"]["strategy"] == {"type": "Recreate"}
    assert not any(d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject") and "cache" in d["metadata"]["name"]
                   for d in docs)  # fmt: skip


def test_scale_runs_cache_replicas_on_the_shared_pgvector_backend(
    rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    docs = rendered["scale"]
    cache_deployment = _one(docs, "Deployment", "rationer-cache")
    assert cache_deployment["spec"]["replicas"] >= 2 and cache_deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    cache = _settings(docs, "rationer-cache", tmp_path)
    assert cache.backend == "pgvector" and cache.pg_schema
    pg_host = re.match(r"postgresql://[^@:]+@([^:/]+):(\d+)/", cache.pg_dsn)
    assert pg_host, "no password in the DSN: PGPASSWORD comes from the Secret"
    _one(docs, "Service", pg_host[1])
    pg = _one(docs, "StatefulSet", pg_host[1])["spec"]["template"]["spec"]["containers"][0]
    assert "pgvector" in pg["image"], "the shared cache needs the vector extension"
    pod = cache_deployment["spec"]["template"]["spec"]
    assert all("persistentVolumeClaim" not in v for v in pod["volumes"]), "replicas cannot share a ReadWriteOnce claim"
    env = {v["name"]: v for v in _container(docs, "rationer-cache")["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "rationer-postgres"
    ledger = _settings(docs, "rationer-ledger", tmp_path, {"admin-token": "a" * 32})
    assert ledger.escrow and ledger.replica_name == "rationer-worker-5d8f7c-abcde"  # the pod name (stand-in)


def test_scale_routers_are_named_by_pod_and_balance_over_the_ledger_pods(
    rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    docs = rendered["scale"]
    router = _settings(docs, "rationer-router", tmp_path)
    assert router.replica_id == "rationer-worker-5d8f7c-abcde"  # pod_settings' stand-in pod name
    router_env = {v["name"]: v for v in _container(docs, "rationer-router")["env"]}
    assert router_env["RATIONER_ROUTER__REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert router.ledger_address.startswith("dns:")  # resolved by test_services_reach_the_pods_the_router_calls
