"""The dashboard's rare-event panels, evaluated by a real Prometheus (Debian's package) scraping a
fresh proxy every second: the first failover and the first all-failed answer show, and a proxy that
stops answering shows in "Scrape targets down". Skipped only where `prometheus` is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.mock.testing import free_port
from tests.harness import gateway_config

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "dashboards" / "gatewayz.json"
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval becomes at a 1 s scrape and a short time range
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus is not installed (Debian: apt-get install prometheus; .ci/run tries)"
)


def panel_query(title: str) -> str:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    expr: str = next(p for p in panels if p["title"] == title)["targets"][0]["expr"]
    return expr.replace("$__rate_interval", RATE_INTERVAL)


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> dict[str, float]:
        """One instant query: the first label value of each series -> its value."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        return {",".join(r["metric"].values()): float(r["value"][1]) for r in answer["data"]["result"]}

    def eventually(self, expr: str, wanted: dict[str, float], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        found: dict[str, float] = {}
        while time.monotonic() < deadline:
            found = self.query(expr)
            if found == wanted:
                return
            time.sleep(0.25)
        raise AssertionError(f"{expr}: {found} (wanted {wanted})")


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    """A factory: `prometheus(port)` starts Prometheus on loopback scraping 127.0.0.1:port every second."""
    started: list[subprocess.Popen[bytes]] = []
    log = (tmp_path / "prometheus.log").open("wb")

    def start(target_port: int) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"scrape_configs: [{{job_name: proxy, static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]}}]\n"
        )
        port = free_port()
        assert PROMETHEUS is not None
        child = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        started.append(child)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert child.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    return Prometheus(url)
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("prometheus did not become ready")

    yield start
    for child in started:
        child.terminate()
        child.wait(timeout=10)
    log.close()


def chat(proxy: Any, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{proxy.url}/chat/completions", json=body, timeout=10)


def test_the_first_failover_and_the_first_all_failed_answer_show_on_the_dashboard(
    mock_provider: Any, proxy_server: Any, prometheus: Any
) -> None:
    a, b = mock_provider("a", fault="status", status=503), mock_provider("b")
    config = gateway_config([("a", a.url), ("b", b.url)], {"gpt-4": ["a", "b"], "solo": ["a"]})
    proxy = proxy_server(config)
    server = prometheus(proxy.port)
    server.eventually("sum(up)", {"": 1.0})
    assert chat(proxy, "gpt-4").headers["x-gatewayz-provider"] == "b"  # one failover: a answered 503
    assert chat(proxy, "solo").status_code == 503  # one all_providers_failed
    server.eventually(panel_query("Failovers by reason"), {"503": 1.0})
    server.eventually(panel_query("Errors by model"), {"solo,all_providers_failed": 1.0})
    # what the panels were before: a series born at 1 never shows in increase()
    assert server.query(f"sum(increase(gatewayz_failovers_total[{RATE_INTERVAL}]))") in ({}, {"": 0.0})
    exposition = httpx.get(f"{proxy.base}/metrics", timeout=10).content
    promtool = shutil.which("promtool")
    if promtool is not None:  # installed with prometheus
        checked = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, check=False)
        assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr
    down = panel_query("Scrape targets down")
    server.eventually(down, {"proxy": 0.0})
    proxy.stop()
    server.eventually(down, {"proxy": 1.0})
