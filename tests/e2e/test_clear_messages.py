"""Messages that say what happened, over real processes (`failover serve`, `failover mock-provider`):
an all-cooling 503 names why each provider is cooling, a provider the proxy does not have is refused by
name, a made-up provider prefix is not served by whatever offer shares the model's name, an unknown
response id's 404 gives the pin lifetime in words, and the mock's fault control replaces its start-up
fault (the README's "break a mock" breaks it)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from proxy.mock.testing import free_port

CONFIG = """
[[providers]]
slug = "steady"
name = "Steady"
base_url = "http://127.0.0.1:{steady}/v1"
listing = "none"
[[providers]]
slug = "flaky"
name = "Flaky"
base_url = "http://127.0.0.1:{flaky}/v1"
listing = "none"
[[models]]
model_id = "gpt-4"
offers = [{{ provider = "steady", provider_model_id = "openai/gpt-4" }}]
[[models]]
model_id = "solo"
offers = [{{ provider = "flaky", provider_model_id = "flaky/solo" }}]
"""
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def started(argv: list[str], env: dict[str, str], ready: str) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        assert child.poll() is None and time.monotonic() < deadline, argv
        try:
            if httpx.get(ready, timeout=1).status_code < 500:
                return child
        except httpx.TransportError:
            time.sleep(0.05)


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A proxy (its base URL) in front of a steady mock and a mock that answers 503 with Retry-After: 20
    (its control URL), each a process of its own."""
    folder = tmp_path_factory.mktemp("messages")
    ports = {"steady": free_port(), "flaky": free_port(), "proxy": free_port()}
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(FAILOVER_DATA_DIR=str(folder / "data"), DATABASE_URL="postgresql://postgres@127.0.0.1:1/x")
    mock = [sys.executable, "-m", "proxy.cli", "mock-provider"]
    children = [
        started([*mock, "--port", str(ports["steady"]), "--name", "steady"], env,
                f"http://127.0.0.1:{ports['steady']}/_mock/faults"),
        started([*mock, "--port", str(ports["flaky"]), "--name", "flaky", "--fault", "status", "--status", "503",
                 "--retry-after", "20", "--fail-rate", "0.5"], env, f"http://127.0.0.1:{ports['flaky']}/_mock/faults"),
    ]  # fmt: skip
    config = folder / "failover.toml"
    config.write_text(CONFIG.format(**ports))
    env["FAILOVER_CONFIG"] = str(config)
    serve = [sys.executable, "-m", "proxy.cli", "serve", "--port", str(ports["proxy"])]
    children.append(started(serve, env, f"http://127.0.0.1:{ports['proxy']}/healthz"))
    try:
        yield f"http://127.0.0.1:{ports['proxy']}/v1", f"http://127.0.0.1:{ports['flaky']}"
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=15)


def test_an_all_cooling_503_says_why_each_provider_is_cooling(processes: tuple[str, str]) -> None:
    proxy, _ = processes
    first = httpx.post(f"{proxy}/chat/completions", json={"model": "solo", **CHAT}, timeout=10)
    if first.status_code == 200:  # --fail-rate 0.5 spares every other request
        first = httpx.post(f"{proxy}/chat/completions", json={"model": "solo", **CHAT}, timeout=10)
    assert first.status_code == 503
    cooling = httpx.post(f"{proxy}/chat/completions", json={"model": "solo", **CHAT}, timeout=10)
    assert cooling.status_code == 503 and 18 <= int(cooling.headers["retry-after"]) <= 20
    message = cooling.json()["error"]["message"]
    assert "rate limit" not in message, message
    assert message.startswith("every provider for solo is cooling down: flaky answered 503 with Retry-After")
    assert "retry in " in message


@pytest.mark.parametrize(
    ("extra", "headers", "param"),
    [
        ({}, {"x-gatewayz-provider": "nosuch"}, "x-gatewayz-provider"),
        ({"provider": {"only": ["nosuch"]}}, {}, "provider.only"),
        ({"provider": {"only": ["nosuch", "steady"]}}, {}, "provider.only"),
        ({"provider": {"order": ["nosuch"]}}, {}, "provider.order"),
    ],
)
def test_a_provider_the_proxy_does_not_have_is_refused_by_name(
    processes: tuple[str, str], extra: dict[str, object], headers: dict[str, str], param: str
) -> None:
    proxy, _ = processes
    answer = httpx.post(f"{proxy}/chat/completions", json={"model": "gpt-4", **CHAT, **extra}, headers=headers)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("unknown_provider", param)
    assert "nosuch" in error["message"] and "its providers: flaky, steady" in error["message"]


def test_a_made_up_provider_prefix_is_not_served(processes: tuple[str, str]) -> None:
    proxy, _ = processes
    made_up = httpx.post(f"{proxy}/chat/completions", json={"model": "anthropic/gpt-4", **CHAT})
    assert made_up.status_code == 404 and made_up.json()["error"]["code"] == "model_not_found"
    for asked in ("openai/gpt-4", "GPT-4", "OpenAI/GPT-4"):  # what an offer is listed as, and another case
        answer = httpx.post(f"{proxy}/chat/completions", json={"model": asked, **CHAT})
        assert answer.status_code == 200 and answer.headers["x-gatewayz-model"] == "gpt-4", asked
    assert httpx.get(f"{proxy}/models/anthropic/gpt-4").status_code == 404


def test_an_unknown_response_id_gives_the_pin_lifetime_in_words(processes: tuple[str, str]) -> None:
    proxy, _ = processes
    answer = httpx.get(f"{proxy}/responses/resp_nope")
    assert answer.status_code == 404
    message = answer.json()["error"]["message"]
    assert "pins are kept 30 days" in message and "e+06" not in message, message


def test_the_mocks_fault_control_replaces_its_start_up_fault(processes: tuple[str, str]) -> None:
    _, flaky = processes
    try:
        set_to = httpx.post(f"{flaky}/_mock/faults", json={"fault": "down"}).json()
        assert (set_to["fault"], set_to["fail_rate"]) == ("down", 1.0)  # not the start-up 0.5
        for _ in range(4):
            with pytest.raises(httpx.TransportError):
                httpx.post(f"{flaky}/v1/chat/completions", json={"model": "x", **CHAT}, timeout=5)
    finally:
        httpx.delete(f"{flaky}/_mock/faults")
    assert httpx.get(f"{flaky}/_mock/faults").json()["fail_rate"] == 0.5  # DELETE: the start-up faults again
