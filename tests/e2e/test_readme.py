"""The README cannot go stale: its commands run, its config keys and metrics exist."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from health.metrics import WORKER_METRICS
from proxy.cli import build_parser, main
from proxy.config import HealthSettings, ProviderConfig, ProxySettings, StaticOffer, UsageSettings
from proxy.mock.testing import free_port
from proxy.runtime.metrics import PROXY_METRICS

README = (Path(__file__).parents[2] / "README.md").read_text()


def sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.S)


def failover_commands() -> list[list[str]]:
    commands = []
    for block in sh_blocks():
        for raw in block.splitlines():
            line = raw.split("#", 1)[0].strip()
            if line.startswith("failover "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_every_failover_command_in_the_readme_parses() -> None:
    commands = failover_commands()
    assert {c[0] for c in commands} >= {"migrate", "sync", "check", "explain", "serve", "health"}
    for command in commands:
        build_parser().parse_args(command)


def test_quick_start_scripts_exist_and_ci_runs_the_test_command() -> None:
    root = Path(__file__).parents[2]
    first = sh_blocks()[0]
    assert "scripts/demo" in first and "scripts/test" in first
    for script in ("scripts/demo", "scripts/test"):
        assert os.access(root / script, os.X_OK)
    assert "scripts/test" in (root / ".ci/run").read_text()


@pytest.mark.parametrize("settings", [ProxySettings, HealthSettings, ProviderConfig, StaticOffer, UsageSettings])
def test_every_config_key_is_in_the_reference(settings: Any) -> None:
    reference = README.split("## Configuration reference", 1)[1]
    for field in dataclasses.fields(settings):
        if field.name != "api_key":
            assert f"{field.name}" in reference, field.name


def test_every_exported_metric_is_documented() -> None:
    for name in (*PROXY_METRICS, *WORKER_METRICS):
        assert name in README, name


CONFIG = """
[[providers]]
slug = "openrouter"
name = "OpenRouter"
base_url = "{a}"
api_key_env = "OPENROUTER_API_KEY"
listing = "openrouter"

[[providers]]
slug = "featherless"
name = "Featherless"
base_url = "{b}"
api_key_env = "FEATHERLESS_API_KEY"
priority = 1

[[models]]
model_id = "gpt-4"
offers = [
  {{ provider = "openrouter", provider_model_id = "openai/gpt-4", pricing_prompt = 0.00003, pricing_completion = 0.00006 }},
  {{ provider = "featherless", provider_model_id = "gpt-4" }},
]
"""


def test_the_add_your_providers_commands_run(
    mock_provider: Any, fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a = mock_provider("openrouter", listing="openrouter", models=("openai/gpt-4", "meta-llama/llama-3-70b-instruct"))
    b = mock_provider("featherless", models=("gpt-4",))
    config = tmp_path / "failover.toml"
    config.write_text(CONFIG.format(a=a.url, b=b.url))
    monkeypatch.setenv("FAILOVER_CONFIG", str(config))
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-readme")  # both keys, as the README exports them
    monkeypatch.setenv("FEATHERLESS_API_KEY", "sk-featherless-readme")
    for command in failover_commands():
        if command[0] in ("serve", "health"):
            continue
        assert main(command) == 0, command
    out = capsys.readouterr().out
    assert "openai/gpt-4 -> gpt-4" in out
    assert "Total: 10 tests, 10 passed, 0 failed" in out
    assert "OpenRouter: 2 models synced" in out

    port = free_port()
    env = {**os.environ, "FAILOVER_CONFIG": str(config), "DATABASE_URL": fresh_database_url}
    serve = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    with serve:
        try:
            log = serve_and_stop(serve, port)
        finally:
            if serve.poll() is None:
                serve.kill()
    assert '"model":"llama-3-70b-instruct"' in log
    assert "sk-or-readme" not in log
    assert "Traceback" not in log


def serve_and_stop(serve: subprocess.Popen[bytes], port: int) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            assert time.monotonic() < deadline and serve.poll() is None
            time.sleep(0.1)
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json={"model": "llama-3-70b-instruct", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert answer.status_code == 200
    assert answer.headers["x-gatewayz-provider"] == "openrouter"
    serve.terminate()
    assert serve.wait(timeout=15) in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
    return serve.stderr.read().decode() if serve.stderr else ""
