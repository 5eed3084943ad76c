"""``rationer bench peer``: Rationer's HTTP door against LiteLLM's proxy, same upstream, same client, one run.

Three paths answer the same OpenAI-compatible requests from the instant
upstream of ``bench.router_http``: the upstream itself (``direct``),
LiteLLM's proxy in its lightest mode (no database, no cache, so no budgets;
its master key as the only auth; one model pointing at the upstream) and
Rationer's HTTP door with every feature on: a real ledger with budgets and rate limits on the key,
its team and org, the router's settlement journal, the tier named and
``no_cache`` sent (no cache service runs, as none is asked). Each path's
added latency is its latency minus ``direct``'s.

Nothing is installed here: LiteLLM comes from the optional extra
``rationer[peer]`` or from any interpreter passed as ``--litellm-python``;
without it the peer is reported unavailable with the reason and the other two
paths still run. LiteLLM fetches a model cost map and other catalogs from
GitHub at import unless told to read its bundled copies, so its environment
says so; the CLI also runs the whole bench in a loopback-only network
namespace (``unshare -n``) when it can, so the peer could not reach out even
if a switch were missed.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.router_http import (
    ADMIN_TOKEN,
    MODEL,
    TIER,
    Ports,
    _measure,
    _processes,
    _start_router,
    _wait_http,
    http_caller,
)
from rationer.platform.net import free_port

TARGETS = {"added_p50_ratio_max": 0.5, "rps_ratio_min": 5.0}
# LiteLLM 1.108.7 reads each of these catalogs from GitHub unless its variable is "true";
# LITELLM_MODE=PRODUCTION stops it loading a .env file from the working directory.
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_OFFLINE_MODE": "true",  # newer releases: all of the above in one switch
    "LITELLM_MODE": "PRODUCTION",
    "LITELLM_LOG": "ERROR",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
}
LITELLM_MAIN = "import sys; from litellm.proxy.proxy_cli import run_server; sys.exit(run_server())"
LITELLM_KEY = "sk-bench-peer-master-key"
INSTALL_HINT = "install the extra (pip install -e '.[peer]') or pass --litellm-python /path/to/venv/bin/python"


def litellm_version(python: str) -> tuple[str, str]:
    """(version, "") when ``python`` can import LiteLLM's proxy, else ("", why not)."""
    if not Path(python).exists():
        return "", f"--litellm-python {python} does not exist; {INSTALL_HINT}"
    probe = "import importlib.metadata as m, litellm.proxy; print(m.version('litellm'))"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **LITELLM_ENV})  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "", f"{python} could not be run ({exc}); {INSTALL_HINT}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return "", f"litellm[proxy] is not importable by {python} ({last}); {INSTALL_HINT}"
    return done.stdout.strip(), ""


def litellm_config(upstream_port: int) -> dict[str, Any]:
    """The lightest proxy: one model, no database_url, no cache, no retries.

    The master key is its only auth (a string compare, no virtual keys without a database): 1.108.7
    refuses to start without one, and Rationer's door authenticates every request too."""
    return {
        "model_list": [{"model_name": MODEL, "litellm_params": {
            "model": f"openai/{MODEL}", "api_base": f"http://127.0.0.1:{upstream_port}/v1",
            "api_key": "unused", "max_retries": 0}}],
        "litellm_settings": {"cache": False, "num_retries": 0, "telemetry": False, "drop_params": True},
        "general_settings": {"master_key": LITELLM_KEY},
    }  # fmt: skip


def start_litellm(python: str, tmp: Path, upstream_port: int, port: int) -> subprocess.Popen[bytes]:
    cfg = tmp / "litellm.yaml"
    cfg.write_text(json.dumps(litellm_config(upstream_port)))  # JSON is YAML
    cmd = [python, "-c", LITELLM_MAIN, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
           "--num_workers", "1"]  # fmt: skip
    return subprocess.Popen(cmd, cwd=tmp, env={**os.environ, **LITELLM_ENV},
                            stdout=(tmp / "litellm.log").open("wb"), stderr=subprocess.STDOUT)  # fmt: skip


async def rationer_key(ledger: str) -> str:
    """A key whose every request checks budgets (key, team, org) and rate limits (key, team) that never bind."""
    from rationer.up import wait_serving
    from services.ledger.admin_client import LedgerAdminClient
    from testsupport.ledger import make_key

    await wait_serving(ledger, 60)
    async with LedgerAdminClient(ledger, ADMIN_TOKEN) as admin:
        k = await make_key(admin, org="bench", allowed_tiers=[TIER])
        for kind, sid in (("key", k.key_id), ("team", k.team_id), ("org", k.org_id)):
            await admin.set_budget(kind, sid, unit="usd", period="monthly", hard_limit=10**17)
        for kind, sid in (("key", k.key_id), ("team", k.team_id)):
            await admin.set_rate_limit(kind, sid, rpm=10**7, tpm=10**10)
        return k.secret


def _ratios(c1: dict[str, Any], c32: dict[str, Any]) -> dict[str, float | None]:
    def div(a: float, b: float) -> float | None:
        return round(a / b, 3) if b > 0 else None

    return {
        "added_p50_c1": div(c1["rationer_vs_direct"]["added_p50_ms"], c1["litellm_vs_direct"]["added_p50_ms"]),
        "added_p99_c1": div(c1["rationer_vs_direct"]["added_p99_ms"], c1["litellm_vs_direct"]["added_p99_ms"]),
        "rps_c32": div(c32["rationer"]["rps"], c32["litellm"]["rps"]),
        "added_p50_c32": div(c32["rationer_vs_direct"]["added_p50_ms"], c32["litellm_vs_direct"]["added_p50_ms"]),
    }


def _with_added(level: dict[str, dict[str, float]]) -> dict[str, Any]:
    base = level["direct"]
    out: dict[str, Any] = dict(level)
    for path in level:
        if path != "direct":
            out[f"{path}_vs_direct"] = {f"added_{q}": round(level[path][q] - base[q], 3) for q in ("p50_ms", "p99_ms")}
    return out


async def _wait_litellm(proc: subprocess.Popen[bytes], port: int, tmp: Path, timeout_s: float) -> str:
    """Empty once LiteLLM answers its liveness probe, else why not (with its log's tail)."""
    try:
        await _wait_http(f"http://127.0.0.1:{port}/health/liveliness", [proc], tmp, timeout_s)
    except RuntimeError:
        log = (tmp / "litellm.log").read_text(errors="replace")[-800:]
        how = "exited" if proc.poll() is not None else f"not ready within {timeout_s:.0f} s"
        return f"LiteLLM's proxy {how} (see --litellm-python); its log ends: {log}"
    return ""


def _setup(version: str, reason: str, network: str) -> dict[str, Any]:
    return {
        "upstream": "instant local aiohttp OpenAI-compatible server (bench.router_http), own process",
        "rationer": "ledger (SQLite) + router HTTP door, own processes; key with budgets (key, team, org) and "
                    "rate limits (key, team); settlement journal on; tier named, no_cache",
        "litellm": f"litellm[proxy]=={version}, no database, no cache, master key only, 1 worker" if version else None,
        "litellm_available": not reason, "litellm_unavailable_reason": reason or None,
        "network": network, "cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip


async def run_bench(
    *, litellm_python: str, requests_c1: int = 300, duration_c32: float = 10.0, concurrency: int = 32,
    warmup: int = 30, rounds: int = 3, network: str = "host network (no namespace)", litellm_start_s: float = 180,
) -> dict[str, Any]:  # fmt: skip
    """One run of every available path at concurrency 1 (``requests_c1`` each) and ``concurrency`` (for
    ``duration_c32`` seconds each); paths take turns in ``rounds`` so drifting load hits them alike."""
    version, reason = litellm_version(litellm_python)
    setup = _setup(version, reason, network)
    ports = Ports(free_port(), free_port(), free_port(), free_port())
    peer_port = free_port()
    with tempfile.TemporaryDirectory(prefix="rationer-bench-peer-") as raw, _processes(Path(raw), ports) as procs:
        tmp = Path(raw)
        if version:
            procs.append(start_litellm(litellm_python, tmp, ports.upstream, peer_port))
            peer = procs[-1]
        key = await rationer_key(f"127.0.0.1:{ports.ledger}")
        _start_router(tmp, procs)
        ours = [p for p in procs if not version or p is not peer]
        await _wait_http(f"http://127.0.0.1:{ports.http}/ready", ours, tmp)
        await _wait_http(f"http://127.0.0.1:{ports.upstream}/v1/models", ours, tmp)
        if version:
            reason = await _wait_litellm(peer, peer_port, tmp, litellm_start_s)
            setup.update(litellm_available=not reason, litellm_unavailable_reason=reason or None)
        upstream = f"http://127.0.0.1:{ports.upstream}/v1/chat/completions"
        targets: dict[str, Callable[[int], Any]] = {"direct": lambda c: http_caller(upstream, "unused", c)}
        if not reason:  # the same body as direct: LiteLLM serves the upstream's model name
            peer_url = f"http://127.0.0.1:{peer_port}/v1/chat/completions"
            targets["litellm"] = lambda c: http_caller(peer_url, LITELLM_KEY, c)
        door = f"http://127.0.0.1:{ports.http}/v1/chat/completions"
        targets["rationer"] = lambda c: http_caller(door, key, c, model=TIER)
        c1 = _with_added(await _measure(targets, requests=requests_c1, concurrency=1, warmup=warmup, rounds=rounds))
        c32 = _with_added(await _measure(targets, requests=10**9, concurrency=concurrency, warmup=warmup,
                                         rounds=rounds, duration_s=duration_c32))  # fmt: skip
    setup["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    ratios = None if reason else _ratios(c1, c32)
    return {
        "bench": "peer", "setup": setup, "c1": c1, "c32": c32,
        "ratios_rationer_over_litellm": ratios, "targets": TARGETS,
        "meets_targets": None if ratios is None else {
            "added_p50_c1": ratios["added_p50_c1"] is not None
                            and ratios["added_p50_c1"] <= TARGETS["added_p50_ratio_max"],
            "rps_c32": ratios["rps_c32"] is not None and ratios["rps_c32"] >= TARGETS["rps_ratio_min"],
        },
    }  # fmt: skip
