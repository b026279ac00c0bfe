"""How common clients retry the proxy's 503s, measured for real, and the README's table says so.

A real `failover serve` in front of a model whose only offer refuses connections (every offer failed
just now: `x-should-retry: false`) and one whose only offer answers 429 with `Retry-After: 2` (every
offer cooling: `Retry-After`). Each client makes one call, in a process of its own, with its default
retries and with the README's fail-fast setting; the proxy's own request counter says how many requests
it sent. openai-python always runs (it is in the lock); the Node clients when `node` and `npm` are
there and their pinned set (`tests/clients/package-lock.json`) installs; LangChain and LiteLLM when
`GATEWAYZ_CLIENTS_PYTHON` names an interpreter that has them (they are not in the lock).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.mock.testing import free_port, refused_url

CLIENTS_DIR = Path(__file__).parents[1] / "clients"
README = (Path(__file__).parents[2] / "README.md").read_text()
RETRY_AFTER_S = 2
CONFIG = """
[[providers]]
slug = "down"
name = "Down"
base_url = "{down}"
listing = "none"
[[providers]]
slug = "limited"
name = "Limited"
base_url = "http://127.0.0.1:{limited}/v1"
listing = "none"
[[models]]
model_id = "gpt-4"
offers = [{{ provider = "down", provider_model_id = "gpt-4" }}]
[[models]]
model_id = "cooling"
offers = [{{ provider = "limited", provider_model_id = "cooling" }}]
"""


def readme_rows() -> dict[str, list[str]]:
    """The clients table: the first cell's client name -> its cells."""
    table = README.split("### Clients: how each retries", 1)[1].split("\n\n", 2)[2]
    rows = [line.strip("|").split("|") for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    return {cells[0].strip(): [c.strip() for c in cells] for cells in rows[1:]}


def promised(row_prefix: str, column: int) -> int:
    """The requests the README's row (its client cell starts with `row_prefix`) says a call makes."""
    (cells,) = [cells for name, cells in readme_rows().items() if name.startswith(row_prefix)]
    found = re.search(r"(\d) requests?", cells[column])
    assert found, cells[column]
    return int(found.group(1))


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("clients")
    ports = {"limited": free_port(), "proxy": free_port()}
    (folder / "failover.toml").write_text(CONFIG.format(down=refused_url(), limited=ports["limited"]))
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    env.update(FAILOVER_CONFIG=str(folder / "failover.toml"), FAILOVER_DATA_DIR=str(folder / "data"),
               DATABASE_URL="postgresql://postgres@127.0.0.1:1/unreachable")  # fmt: skip
    mock = [sys.executable, "-m", "proxy.cli", "mock-provider", "--port", str(ports["limited"]), "--name", "limited",
            "--fault", "rate_limit", "--retry-after", str(RETRY_AFTER_S)]  # fmt: skip
    serve = [sys.executable, "-m", "proxy.cli", "serve", "--port", str(ports["proxy"])]
    children = [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for argv in (mock, serve)]
    base = f"http://127.0.0.1:{ports['proxy']}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert all(c.poll() is None for c in children) and time.monotonic() < deadline
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield base
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=15)


def requests_seen(base: str) -> int:
    text = httpx.get(f"{base}/metrics").text
    return int(sum(float(v) for v in re.findall(r'^gatewayz_requests_total\{[^}]*\} ([0-9.]+)$', text, re.M)))


def call(base: str, argv: list[str], model: str, retries: str) -> tuple[int, dict[str, Any]]:
    """One call by a client in a process of its own: the requests the proxy saw, and what it reported."""
    if model == "cooling":
        time.sleep(RETRY_AFTER_S + 0.3)  # the last call's cooldown is over: every call starts alike
    before = requests_seen(base)
    done = subprocess.run([*argv, f"{base}/v1", model, retries], capture_output=True, text=True, timeout=120, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout + done.stderr
    return requests_seen(base) - before, json.loads(lines[-1])


@pytest.fixture(scope="module")
def node_clients() -> Path:
    """The pinned Node clients, installed once per lock file into a cache folder (`npm ci`)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed")
    digest = hashlib.sha256((CLIENTS_DIR / "package-lock.json").read_bytes()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"gatewayz-test-clients-{digest}"
    if not (folder / "node_modules" / "ai").exists():
        folder.mkdir(exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(CLIENTS_DIR / name, folder / name)
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=folder, capture_output=True, text=True,
                              timeout=300, check=False)  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"the pinned Node clients did not install (no registry?): {done.stderr[-300:]}")
    shutil.copy(CLIENTS_DIR / "node_client.mjs", folder / "node_client.mjs")
    return folder


def check_row(base: str, argv: list[str], row: str, *, throws: bool = True) -> None:
    """The README's row for this client, measured: its default retries in both kinds of 503, then 0."""
    now, now_report = call(base, argv, "gpt-4", "default")
    assert now == promised(row, 2), now_report
    cooling, cooling_report = call(base, argv, "cooling", "default")
    assert cooling == promised(row, 3), cooling_report
    assert cooling_report["call_s"] >= 2 * RETRY_AFTER_S * 0.9  # it waited what Retry-After said, twice
    for model in ("gpt-4", "cooling"):
        fast, fast_report = call(base, argv, model, "0")
        assert fast == promised(row, 4) == 1, fast_report
        assert fast_report["threw"] is throws and fast_report["ok"] is False
        assert "every provider for" in fast_report["error"]


def test_openai_python(proxy: str) -> None:
    check_row(proxy, [sys.executable, str(CLIENTS_DIR / "py_client.py"), "openai"], "openai-python")


def test_openai_node(proxy: str, node_clients: Path) -> None:
    check_row(proxy, ["node", str(node_clients / "node_client.mjs"), "openai"], "openai-node")


def test_vercel_ai_sdk_generate_text_retries_even_a_503_that_says_not_to(proxy: str, node_clients: Path) -> None:
    argv = ["node", str(node_clients / "node_client.mjs"), "generateText"]
    check_row(proxy, argv, "Vercel AI SDK `generateText`")
    _, report = call(proxy, argv, "gpt-4", "default")
    assert 5.5 <= report["call_s"] < 9  # 2 s, then 4 s of backoff, whatever x-should-retry says


def test_vercel_ai_sdk_stream_text_ends_empty_without_throwing(proxy: str, node_clients: Path) -> None:
    argv = ["node", str(node_clients / "node_client.mjs"), "streamText"]
    check_row(proxy, argv, "Vercel AI SDK `streamText`", throws=False)
    _, report = call(proxy, argv, "gpt-4", "0")
    assert (report["threw"], report["text"]) == (False, "") and "every provider for" in report["error"]


@pytest.mark.parametrize(("kind", "row"), [("langchain", "LangChain"), ("litellm", "LiteLLM")])
def test_python_frameworks(proxy: str, kind: str, row: str, monkeypatch: pytest.MonkeyPatch) -> None:
    python = os.environ.get("GATEWAYZ_CLIENTS_PYTHON")
    if not python:
        pytest.skip("GATEWAYZ_CLIENTS_PYTHON names no interpreter with langchain-openai and litellm")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of LiteLLM's price list at import
    check_row(proxy, [python, str(CLIENTS_DIR / "py_client.py"), kind], row)
