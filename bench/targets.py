"""What a benchmark run measures, started on loopback: upstreams, forwarders, the proxy, LiteLLM.

- `direct`: the fast mock upstream itself (`bench/upstream.py`), the floor of everything;
- `fwd-aiohttp`, `fwd-httpx-aiohttp`, `fwd-httpx`: bare forwarders (`bench/forwarder.py`) on each
  upstream client, on the same server stack as the proxy;
- `proxy`: `failover serve`, one worker, with its own database;
- `litellm`: the LiteLLM proxy, one worker, no database, when its virtual environment exists.

The proxy's config also declares a provider whose port refuses connections and one that answers
500, each the first choice of its own models, for the failover measurement.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Processes, Started, free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent
MODEL = "bench-model"
PROVIDER_KEY = "sk-bench-provider"
LITELLM_KEY = "sk-bench-litellm"
FAILOVER_MODELS = 100  # models per failure kind: each is asked a few times, before its passive health turns


@dataclass
class Target:
    name: str
    label: str
    port: int
    started: Started
    token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    @property
    def pid(self) -> int:
        return self.started.pid


def proxy_config(fast: int, broken: int, refused: int) -> str:
    def provider(slug: str, port: int, priority: int) -> str:
        return (
            f'[[providers]]\nslug = "{slug}"\nname = "{slug.title()}"\nbase_url = "http://127.0.0.1:{port}/v1"\n'
            f'api_key_env = "BENCH_{slug.upper()}_KEY"\nlisting = "none"\nprobe = "none"\npriority = {priority}\n'
        )

    lines = [
        "# Written by bench/targets.py for one benchmark run.",
        "[proxy]",
        "# The failover measurement asks each failing offer first, many times: keep its circuit closed.",
        "circuit_failure_threshold = 1000000",
        "",
        provider("fast", fast, 1),
        provider("refused", refused, 0),
        provider("broken", broken, 0),
        f'[[models]]\nmodel_id = "{MODEL}"\noffers = [{{ provider = "fast", provider_model_id = "{MODEL}" }}]\n',
    ]
    for kind in ("refused", "broken"):
        for i in range(FAILOVER_MODELS):
            lines.append(
                f'[[models]]\nmodel_id = "{kind}-{i}"\noffers = [{{ provider = "{kind}", provider_model_id = '
                f'"{kind}-{i}" }}, {{ provider = "fast", provider_model_id = "{MODEL}" }}]\n'
            )
    return "\n".join(lines)


def litellm_config(fast: int) -> str:
    return (
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: http://127.0.0.1:{fast}/v1\n"
        f"      api_key: {PROVIDER_KEY}\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  set_verbose: false\n"
    )


def _python() -> str:
    return sys.executable


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "FAILOVER_"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


class Bench:
    """Starts the targets; `database_url` None means the proxy's embedded PostgreSQL."""

    def __init__(self, procs: Processes, out: Path, database_url: str | None) -> None:
        self.procs = procs
        self.out = out
        self.database_url = database_url
        self.targets: dict[str, Target] = {}
        self.fast_port = self.broken_port = self.refused_port = 0

    def start_upstreams(self) -> Target:
        self.fast_port, self.broken_port, self.refused_port = free_port(), free_port(), free_port()
        fast = self.procs.start("upstream", [_python(), "-m", "bench.upstream", "--port", str(self.fast_port)],
                                _clean_env())
        broken = self.procs.start(
            "upstream-500", [_python(), "-m", "bench.upstream", "--port", str(self.broken_port), "--status", "500"],
            _clean_env(),
        )
        wait_http(fast, f"http://127.0.0.1:{self.fast_port}/v1/models", 20)
        wait_http(broken, f"http://127.0.0.1:{self.broken_port}/v1/models", 20)
        self.targets["direct"] = Target("direct", "upstream, direct", self.fast_port, fast)
        return self.targets["direct"]

    def start_forwarder(self, client: str) -> Target:
        port = free_port()
        argv = [_python(), "-m", "bench.forwarder", "--client", client, "--port", str(port),
                "--upstream", f"http://127.0.0.1:{self.fast_port}"]
        started = self.procs.start(f"fwd-{client}", argv, _clean_env())
        wait_http(started, f"http://127.0.0.1:{port}/v1/models", 30)
        target = Target(f"fwd-{client}", f"bare forwarder, {client.replace('-', ' + ')}", port, started)
        self.targets[target.name] = target
        return target

    def start_proxy(self, workers: int = 1) -> Target:
        """`failover serve --workers N`; named `proxy` with one worker, `proxy-<N>w` with more."""
        name = "proxy" if workers == 1 else f"proxy-{workers}w"
        port = free_port()
        config = self.out / "proxy.toml"
        config.write_text(proxy_config(self.fast_port, self.broken_port, self.refused_port))
        env = _clean_env()
        env.update({f"BENCH_{s.upper()}_KEY": PROVIDER_KEY for s in ("fast", "refused", "broken")})
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        else:
            env["FAILOVER_DATA_DIR"] = str(self.out / "failover-data")
        failover = str(Path(_python()).with_name("failover"))
        argv = [failover, "--config", str(config), "serve", "--port", str(port), "--workers", str(workers)]
        started = self.procs.start(name, argv, env)
        wait_http(started, f"http://127.0.0.1:{port}/readyz", 120)
        label = "failover proxy" if workers == 1 else f"failover proxy, {workers} workers"
        self.targets[name] = Target(name, label, port, started)
        return self.targets[name]

    def start_litellm(self, venv: Path) -> Target | None:
        binary = venv / "bin" / "litellm"
        if not binary.exists():
            return None
        port = free_port()
        config = self.out / "litellm.yaml"
        config.write_text(litellm_config(self.fast_port))
        env = _clean_env()
        env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"})
        env.pop("PYTHONPATH", None)
        argv = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
        started = self.procs.start("litellm", argv, env)
        wait_http(started, f"http://127.0.0.1:{port}/health/liveliness", 180)
        self.targets["litellm"] = Target("litellm", "LiteLLM proxy", port, started, token=LITELLM_KEY)
        return self.targets["litellm"]


async def create_database(admin_url: str, name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


async def drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def database_for_run(admin_url: str | None, name: str) -> str | None:
    """A fresh database on the server at `admin_url`, or None (embedded) when there is none."""
    if not admin_url:
        return None
    try:
        return asyncio.run(create_database(admin_url, name))
    except (OSError, TimeoutError) as exc:
        print(f"no PostgreSQL at {admin_url} ({exc}); the proxy will use its embedded one", file=sys.stderr)
        return None
