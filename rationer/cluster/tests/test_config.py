"""The cluster's generated config: every replica's settings load, ports do not collide, targets balance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w
from pydantic import BaseModel

from rationer.cluster.backing import cluster_database
from rationer.cluster.config import (
    ClusterOptions,
    addresses,
    balanced_target,
    build_config,
    database_dsn,
    replicas,
    router_target,
)
from rationer.platform.client import ROUND_ROBIN, channel_options
from rationer.platform.settings import load_settings
from services.cache.settings import CacheSettings
from services.ledger.settings import LedgerSettings
from services.router.settings import RouterSettings
from services.slm_worker.settings import WorkerSettings

CLASSES: dict[str, tuple[type[BaseModel], str]] = {
    "ledger": (LedgerSettings, "ledger"), "cache": (CacheSettings, "cache"),
    "slm-worker": (WorkerSettings, "worker"), "router": (RouterSettings, "router"),
}  # fmt: skip


def loaded(tmp_path: Path, opts: ClusterOptions, cache_dsn: str = "") -> dict[str, BaseModel]:
    (tmp_path / "admin_token").write_text("a" * 32)
    config = tmp_path / "gateway.toml"
    config.write_text(tomli_w.dumps(build_config(opts, "rationer_cluster_ab12", cache_dsn)))
    out = {}
    for r in replicas(opts):
        cls, section = CLASSES[r.service]
        out[r.name] = load_settings(cls, section, toml_path=config, environ=r.env)
    return out


def test_every_replica_loads_its_own_listen_address_and_files(tmp_path: Path) -> None:
    opts = ClusterOptions(data_dir=tmp_path, base_port=7500)
    got = loaded(tmp_path, opts, cache_dsn="postgresql://u@h:1/db")
    assert sorted(got) == sorted([f"router{i}" for i in range(2)] + [f"ledger{i}" for i in range(2)]
                                 + [f"cache{i}" for i in range(2)] + [f"worker{i}" for i in range(3)])  # fmt: skip
    listens = [s.listen for s in got.values()]  # type: ignore[attr-defined]
    https = [got[f"router{i}"].http.listen for i in range(2)]  # type: ignore[attr-defined]
    assert len(set(listens + https)) == len(listens) + 2, "no two processes on one port"
    assert [r.address for r in replicas(opts)] == listens
    router0, router1 = got["router0"], got["router1"]
    assert isinstance(router0, RouterSettings) and isinstance(router1, RouterSettings)
    assert router0.journal_path != router1.journal_path, "each router its own journal"
    assert router0.ledger_address == "ipv4:127.0.0.1:7510,127.0.0.1:7511"
    assert router0.cache_address == "ipv4:127.0.0.1:7520,127.0.0.1:7521"
    assert router0.worker_addresses == addresses(opts, "worker")
    ledger0, ledger1 = got["ledger0"], got["ledger1"]
    assert isinstance(ledger0, LedgerSettings) and isinstance(ledger1, LedgerSettings)
    assert ledger0.backend == "postgres" and ledger0.postgres_dsn.endswith("/rationer_cluster_ab12")
    assert ledger0.redis_prefix == "rationer:rationer_cluster_ab12:rl:" and ledger0.escrow
    assert ledger0.replica_name != ledger1.replica_name
    cache = got["cache0"]
    assert isinstance(cache, CacheSettings)
    assert (cache.backend, cache.pg_dsn) == ("pgvector", "postgresql://u@h:1/db")
    assert cache.pg_schema == "rationer_cluster_ab12"


def test_without_a_vector_server_the_caches_stay_embedded(tmp_path: Path) -> None:
    got = loaded(tmp_path, ClusterOptions(data_dir=tmp_path))
    caches = [got["cache0"], got["cache1"]]
    assert all(isinstance(c, CacheSettings) and c.backend == "faiss" for c in caches)
    assert caches[0].data_dir != caches[1].data_dir  # type: ignore[attr-defined]


def test_one_replica_is_a_plain_address_and_several_a_balanced_list() -> None:
    assert balanced_target(["127.0.0.1:1"]) == "127.0.0.1:1"
    assert router_target(ClusterOptions(routers=3, base_port=100)) == "ipv4:127.0.0.1:100,127.0.0.1:101,127.0.0.1:102"


@pytest.mark.parametrize("target", ["ipv4:127.0.0.1:1,127.0.0.1:2", "dns:ledger:7401", "ipv6:[::1]:1"])
def test_multi_address_targets_balance_per_call(target: str) -> None:
    assert ROUND_ROBIN in channel_options(target)
    assert channel_options(target, [("a", 1)])[0] == ("a", 1)


def test_a_plain_address_keeps_grpcs_default_policy() -> None:
    assert channel_options("127.0.0.1:7401") == []


@pytest.mark.parametrize(("dsn", "want"), [
    ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/c1"),
    ("postgresql://u@h:5/test?sslmode=require", "postgresql://u@h:5/c1?sslmode=require"),
    ("postgresql://u@h:5", "postgresql://u@h:5/c1"),
])  # fmt: skip
def test_the_cluster_database_replaces_the_dsns(dsn: str, want: str) -> None:
    assert database_dsn(ClusterOptions(postgres_dsn=dsn), "c1") == want


def test_a_data_dir_keeps_its_database_across_starts(tmp_path: Path) -> None:
    first = cluster_database(tmp_path, "")
    assert first.startswith("rationer_cluster_") and cluster_database(tmp_path, "") == first
    assert json.loads((tmp_path / "cluster.json").read_text()) == {"database": first}
    assert cluster_database(tmp_path, "mine") == "mine"
    assert (tmp_path / "cluster.json").stat().st_mode & 0o777 == 0o600
