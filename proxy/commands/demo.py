"""`failover demo`: the whole product on one machine, with nothing to configure.

It starts three mock providers on loopback (`flakyai` is preferred but fails every other request),
an embedded PostgreSQL of its own, migrates and syncs the catalog, runs the real `failover serve` as
a child process, and sends a scripted series of requests with the official `openai` SDK, printing
which provider served each one and every failover on the way.
With `--once` it exits after the script; otherwise the proxy keeps serving until Ctrl-C.

It never touches the user's catalog: its config, its database (`<data folder>/demo/pgdata`, whatever
`DATABASE_URL` says) and its proxy's environment (no `REDIS_URL`, no `FAILOVER_API_KEYS`) are its
own. SIGINT, SIGTERM and SIGHUP (`proxy.cli`) unwind it: the proxy child is terminated, the mocks
closed and the embedded PostgreSQL stopped; on Linux the child also ends if the demo is killed
(`proxy.commands.with_parent`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from importlib.util import find_spec
from pathlib import Path

from proxy.commands import with_parent
from proxy.commands.sync import sync_catalog
from proxy.config import Config, load_config
from proxy.errors import ConfigError
from proxy.mock.testing import MockProvider, free_port
from proxy.store.database import create_pool, database_url
from proxy.store.migrate import apply_migrations

if find_spec("httpx") is None or find_spec("openai") is None:  # the demo is a client: it has its own extra
    raise ConfigError("`failover demo` needs the demo extra: pip install 'gatewayz-failover[demo]'")

import httpx

ADMIN_TOKEN = "demo-admin-token"  # noqa: S105 (a demo-only token for a proxy bound to loopback)
KEYS = {
    "FLAKYAI_API_KEY": "demo-key-flaky",
    "STEADYAI_API_KEY": "demo-key-steady",
    "BACKUPAI_API_KEY": "demo-key-backup",
}
# What the demo's processes must not inherit from the user's shell: they would point the demo at the
# user's database or shared cache, or make its open proxy refuse its own requests.
NOT_INHERITED = ("DATABASE_URL", "REDIS_URL", "FAILOVER_API_KEYS", "FAILOVER_CONFIG", "PROMETHEUS_MULTIPROC_DIR")

CONFIG = """\
# Written by `failover demo`: three mock providers on loopback.
[proxy]
strategy = "balanced"
max_attempts = 3
deadline_s = 20
first_byte_timeout_s = 2
stream_idle_timeout_s = 5
circuit_failure_threshold = 3
circuit_cooldown_s = 10

[[providers]]
slug = "flakyai"
name = "FlakyAI"
base_url = "{flaky}"
api_key_env = "FLAKYAI_API_KEY"
listing = "none"
priority = 0

[[providers]]
slug = "steadyai"
name = "SteadyAI"
base_url = "{steady}"
api_key_env = "STEADYAI_API_KEY"
listing = "openrouter"
priority = 1

[[providers]]
slug = "backupai"
name = "BackupAI"
base_url = "{backup}"
api_key_env = "BACKUPAI_API_KEY"
listing = "openai"
priority = 2

[[models]]
model_id = "gpt-4"
offers = [
  {{ provider = "flakyai", provider_model_id = "flaky/gpt-4", pricing_prompt = 0.00002, pricing_completion = 0.00004 }},
]
"""


def say(text: str = "") -> None:
    print(text, flush=True)


@contextmanager
def mock_providers() -> Iterator[dict[str, MockProvider]]:
    with ExitStack() as stack:
        mocks = {
            "flakyai": MockProvider("flakyai", models=("flaky/gpt-4",), fault="status", status=503, fail_rate=0.5),
            "steadyai": MockProvider("steadyai", models=("openai/gpt-4", "meta-llama/llama-3-70b-instruct"),
                                     listing="openrouter"),
            "backupai": MockProvider("backupai", models=("gpt-4", "llama-3-70b-instruct")),
        }
        for mock in mocks.values():
            stack.enter_context(mock)
        yield mocks


async def prepare_catalog(config: Config, url: str) -> None:
    pool = await create_pool(url)
    try:
        await apply_migrations(pool)
        for report in await sync_catalog(pool, config):
            say(f"  sync  {report.line()}")
    finally:
        await pool.close()


def demo_environment(environ: Mapping[str, str], folder: Path) -> dict[str, str]:
    """The environment of the demo and its proxy: the user's, less what would reach the user's own
    catalog, cache or keys, plus the demo's data folder and mock keys."""
    env = {k: v for k, v in environ.items() if k not in NOT_INHERITED}
    return {**env, **KEYS, "FAILOVER_DATA_DIR": str(folder)}


@contextmanager
def proxy_process(config_path: Path, url: str, port: int, env: Mapping[str, str]) -> Iterator[str]:
    env = {**env, "FAILOVER_CONFIG": str(config_path), "DATABASE_URL": url, "FAILOVER_ADMIN_TOKEN": ADMIN_TOKEN}
    serve = [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)]
    command = with_parent.command(os.getpid(), serve)  # the proxy ends with the demo, even on SIGKILL
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, child)
        yield base
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait_ready(base: str, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the proxy exited: {child.stderr.read().decode() if child.stderr else ''}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the proxy did not become ready within 30 s")


def run_demo(args: argparse.Namespace) -> int:
    folder = Path(os.environ.get("FAILOVER_DATA_DIR", ".failover")).resolve() / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    env = demo_environment(os.environ, folder)
    say("Gatewayz failover proxy demo")
    with mock_providers() as mocks:
        config_path = folder / "demo.toml"
        config_path.write_text(
            CONFIG.format(flaky=mocks["flakyai"].url, steady=mocks["steadyai"].url, backup=mocks["backupai"].url)
        )
        config = load_config(config_path, env)
        url = database_url(config, announce=False)
        say(f"  config     {config_path}")
        say(f"  database   its own embedded PostgreSQL in {folder / 'pgdata'} (your catalog is not touched)")
        say("  providers  " + ", ".join(f"{s} ({m.url})" for s, m in mocks.items()))
        asyncio.run(prepare_catalog(config, url))
        with proxy_process(config_path, url, free_port(), env) as base:
            say(f"  proxy      {base}/v1  (admin token: {ADMIN_TOKEN})\n")
            from proxy.commands.demo_script import run_script

            run_script(base, mocks, ADMIN_TOKEN)
            say(path_hint())
            if not args.once:
                _serve_until_interrupted(base)
    return 0


def path_hint() -> str:
    """How to get the `failover` command this demo runs from onto the user's PATH."""
    if sys.prefix == sys.base_prefix:  # not in a virtual environment: installed where the shell finds it
        return "\nNext, with your own providers: see the README's \"Add your providers\"."
    venv = Path(sys.prefix)
    shown = venv.relative_to(Path.cwd()) if venv.is_relative_to(Path.cwd()) else venv
    return (
        f"\nNext, with your own providers (README, \"Add your providers\"): `source {shown}/bin/activate` "
        "puts the `failover` command on your PATH."
    )


def _serve_until_interrupted(base: str) -> None:
    say(f"\nThe proxy keeps serving at {base}/v1 — try:")
    say(f"  curl -s {base}/v1/chat/completions -H 'content-type: application/json' \\")
    say("       -d '{\"model\": \"gpt-4\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}' -i")
    say("Ctrl-C stops everything.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("\nstopping")
