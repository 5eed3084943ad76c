"""Read rendered deploy/k8s documents the way a pod would see them (for test_k8s_manifests.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel

from rationer.platform.settings import load_settings
from tests.integration.kustomize_lite import Doc


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def container(docs: list[Doc], deployment: str) -> dict[str, Any]:
    pod = one(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1, deployment
    return cast(dict[str, Any], pod["containers"][0])


def ports(spec: dict[str, Any]) -> dict[str, int]:
    """A container's ports by name."""
    return {p["name"]: p["containerPort"] for p in spec["ports"]}


def port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def pod_settings(
    docs: list[Doc],
    deployment: str,
    settings: tuple[type[BaseModel], str],
    tmp: Path,
    secrets: dict[str, str] | None = None,
) -> Any:
    """``settings`` (class, TOML section) as the pod would build them: ConfigMap file, env, Secret files.

    ``secrets`` overrides the Secret's values (key -> value); None keeps the
    shipped placeholders.
    """
    pod = one(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    main = pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    remap: dict[str, str] = {}
    for mount in main["volumeMounts"]:
        volume = volumes[mount["name"]]
        here = tmp / deployment / mount["name"]
        here.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            data = one(docs, "ConfigMap", volume["configMap"]["name"])["data"]
        elif "secret" in volume:
            data = dict(one(docs, "Secret", volume["secret"]["secretName"])["stringData"]) | (secrets or {})
        else:
            continue
        for key, value in data.items():
            (here / key).write_text(value)
        remap[mount["mountPath"]] = str(here)

    def local(path: str) -> str:
        for mounted, here in remap.items():
            if path.startswith(mounted + "/"):
                return here + path[len(mounted) :]
        return path

    env: dict[str, str] = {}
    for var in main.get("env", []):
        if "value" in var:
            env[var["name"]] = local(str(var["value"]))
        elif "fieldRef" in var["valueFrom"]:
            env[var["name"]] = "rationer-worker-5d8f7c-abcde"  # a pod name
    args = main["args"]
    cls, section = settings
    return load_settings(cls, section, toml_path=Path(local(args[args.index("--config") + 1])), environ=env)
