"""Render deploy/k8s overlays without kubectl: the small part of kustomize they use.

Supported, with kustomize's meaning: ``resources`` (YAML files and
directories holding a kustomization.yaml), ``namespace``, ``patches`` given
by ``path`` (strategic merge patches whose target is the patch's own kind and
name), ``replicas`` and ``images`` (what ``kustomize edit set image`` writes).
Strategic merge follows the Kubernetes rules for the lists our patches
touch: containers, env, volumes and ports merge by their key; any other list
is replaced; a ``null`` value deletes the key. Anything else in a
kustomization.yaml is refused, so this renderer cannot silently disagree
with ``kubectl apply -k``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

SUPPORTED = {"apiVersion", "kind", "namespace", "resources", "patches", "replicas", "images"}
# Cluster-scoped kinds keep no namespace.
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding"}
# patchMergeKey of the list fields our patches touch (from the Kubernetes API).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}


def load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def key_of(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def merge(base: Any, patch: Any, field: str = "") -> Any:
    """Strategic merge of ``patch`` onto ``base`` (new objects, inputs untouched)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    key = MERGE_KEYS.get(field)
    if key and isinstance(base, list) and isinstance(patch, list):
        # kustomize's order: the patch's items first (merged onto their base
        # item), then the base items the patch does not name.
        by_key = {item[key]: item for item in base}
        named = {item[key] for item in patch}
        merged = [merge(by_key[item[key]], item, field) if item[key] in by_key else copy.deepcopy(item)
                  for item in patch]  # fmt: skip
        return merged + [copy.deepcopy(item) for item in base if item[key] not in named]
    return copy.deepcopy(patch)


def render(directory: Path) -> list[Doc]:
    """Every document the kustomization in ``directory`` produces."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(k) - SUPPORTED
    if unknown:
        raise ValueError(f"{directory}: kustomize-lite does not implement {sorted(unknown)}")
    docs: list[Doc] = []
    for res in k.get("resources", []):
        path = (directory / res).resolve()
        docs += render(path) if path.is_dir() else load_docs(path)
    seen = [key_of(d) for d in docs]
    if len(seen) != len(set(seen)):
        raise ValueError(f"{directory}: a resource is defined twice: {seen}")
    by_key = {key_of(d): i for i, d in enumerate(docs)}
    for patch in k.get("patches", []):
        if set(patch) != {"path"}:
            raise ValueError(f"{directory}: only `patches: - path: FILE` is implemented, got {patch}")
        for p in load_docs(directory / patch["path"]):
            target = key_of(p)
            if target not in by_key:
                raise ValueError(f"{directory}: patch {patch['path']} targets missing {target}")
            docs[by_key[target]] = merge(docs[by_key[target]], p)
    for rep in k.get("replicas", []):
        hits = [d for d in docs if d["metadata"]["name"] == rep["name"] and "replicas" in d.get("spec", {})]
        if not hits:
            raise ValueError(f"{directory}: replicas for unknown workload {rep['name']}")
        for d in hits:
            d["spec"]["replicas"] = rep["count"]
    for image in k.get("images", []):
        _set_image(docs, image)
    if "namespace" in k:
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = k["namespace"]
    return docs


def _set_image(docs: list[Doc], image: dict[str, str]) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise ValueError(f"images: unknown fields {sorted(unknown)}")
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, _, tag = container["image"].partition(":")
            if name != image["name"]:
                continue
            new = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{new}@{image['digest']}"
            else:
                container["image"] = f"{new}:{image.get('newTag', tag)}" if image.get("newTag", tag) else new
