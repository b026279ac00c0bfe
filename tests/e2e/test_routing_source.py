"""One source of truth for routing: what `failover sync` writes (provider priority and activity,
pinned offers, aliases) is what every running proxy routes by, within a second of `sync`, whatever
config the proxy itself started with, through Postgres NOTIFY or Redis alike."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.config import load_config
from proxy.runtime.catalog import Catalog
from proxy.types import Offer
from tests.health_helpers import KEYS, wait_until

CONFIG = """
[proxy]
first_byte_timeout_s = 5
deadline_s = 20
[[providers]]
slug = "a"
name = "A"
base_url = "{a}"
api_key_env = "A_API_KEY"
listing = "none"
priority = {a_priority}
[[providers]]
slug = "b"
name = "B"
base_url = "{b}"
api_key_env = "B_API_KEY"
listing = "none"
priority = 1
[[models]]
model_id = "gpt-4"
offers = [{{ provider = "a", provider_model_id = "a/gpt-4" }}, {{ provider = "b", provider_model_id = "b/gpt-4" }}]
{extra}
"""
PINNED = """
[[models]]
model_id = "llama-3-70b"
offers = [{ provider = "b", provider_model_id = "b/llama-3-70b" }]
"""


def write_config(path: Path, urls: dict[str, str], *, a_priority: int, extra: str = "") -> None:
    path.write_text(CONFIG.format(a_priority=a_priority, extra=extra, **urls))


def run_cli(path: Path, env: dict[str, str], command: str) -> str:
    inherited = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "FAILOVER_REDIS_PREFIX")}
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "--config", str(path), command],
        env={**inherited, **env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def served_by(proxy: Any, model: str = "gpt-4") -> str | None:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{proxy.url}/chat/completions", json=body, timeout=10)
    return response.headers.get("x-gatewayz-provider") if response.status_code == 200 else None


def follows_sync(tmp_path: Path, env: dict[str, str], mock_provider: Any, proxy_server: Any) -> None:
    urls = {"a": mock_provider("a").url, "b": mock_provider("b").url}
    path = tmp_path / "failover.toml"
    write_config(path, urls, a_priority=0)
    run_cli(path, env, "migrate")
    run_cli(path, env, "sync")
    started_with = load_config(path, {**KEYS, **env})
    first, second = proxy_server(started_with), proxy_server(started_with)
    instances = (first, second)
    for proxy in instances:
        wait_until(lambda p=proxy: p.gateway.catalog.source == "postgres" and served_by(p) == "a")
    write_config(path, urls, a_priority=2, extra=PINNED)  # b now preferred; a model pinned on b
    output = run_cli(path, env, "sync")
    synced = time.monotonic()
    assert "announced to running proxies through postgres" in output
    for proxy in instances:
        wait_until(lambda p=proxy: served_by(p) == "b" and served_by(p, "llama-3-70b") == "b", timeout=1.0)
    elapsed = time.monotonic() - synced
    assert elapsed < 1.0, f"routing followed sync after {elapsed:.2f} s"
    for proxy in instances:  # the proxies' own config still says a first: the catalog decided
        assert proxy.gateway.config.provider("a").priority == 0
        assert [o.priority for o in proxy.gateway.catalog.lookup("gpt-4") if o.provider_slug == "a"] == [2]


def test_priority_and_pinned_offers_reach_two_instances_through_notify(
    mock_provider: Any, proxy_server: Any, fresh_database_url: str, tmp_path: Path
) -> None:
    follows_sync(tmp_path, {**KEYS, "DATABASE_URL": fresh_database_url}, mock_provider, proxy_server)


@pytest.fixture
def redis_env(redis_server_url: str, redis_prefix: str) -> dict[str, str]:
    return {"REDIS_URL": redis_server_url, "FAILOVER_REDIS_PREFIX": redis_prefix}


def test_priority_and_pinned_offers_reach_two_instances_through_redis(
    mock_provider: Any, proxy_server: Any, fresh_database_url: str, redis_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**KEYS, "DATABASE_URL": fresh_database_url, **redis_env}
    follows_sync(tmp_path, env, mock_provider, proxy_server)


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    path = tmp_path / "failover.toml"
    write_config(path, {"a": "http://127.0.0.1:9/v1", "b": "http://127.0.0.1:9/v1"}, a_priority=0)
    return Catalog(load_config(path, KEYS))


def test_the_catalog_decides_priority_and_pinned_offers_the_config_hosts_and_keys(
    catalog: Catalog, tmp_path: Path
) -> None:
    assert catalog.source == "config" and [o.priority for o in catalog.lookup("gpt-4") or ()] == [0, 1]
    from_db = Offer("llama-3-70b-instruct", "b", "meta-llama/Meta-Llama-3-70B-Instruct", "http://evil/v1", "EVIL", priority=7)
    unknown = Offer("llama-3-70b-instruct", "z", "z/llama", "http://127.0.0.1:9/v1", "Z_KEY")
    catalog.replace({"llama-3-70b-instruct": [from_db, unknown]}, source="postgres")
    # the database holds other offers: the config's pinned ones route beside them, as the config says
    assert [(o.provider_slug, o.priority) for o in catalog.lookup("gpt-4") or ()] == [("a", 0), ("b", 1)]
    catalog.replace({"llama-3-70b-instruct": [from_db]}, source="postgres", retired=frozenset({"a"}))
    assert [o.provider_slug for o in catalog.lookup("gpt-4") or ()] == ["b"]  # not a provider the catalog retired
    catalog.replace({"llama-3-70b-instruct": [from_db, unknown]}, source="postgres", retired=frozenset())
    (offer,) = catalog.lookup("llama-3-70b-instruct") or ()
    assert (offer.priority, offer.base_url, offer.api_key_env) == (7, "http://127.0.0.1:9/v1", "B_API_KEY")
    # a provider-style id finds the canonical model the catalog files it under (an alias sync applied)
    assert catalog.lookup("meta-llama/meta-llama-3-70b-instruct") == (offer,)
    moved = tmp_path / "moved.toml"  # a reload moves provider b: the database's offers follow, priority kept
    write_config(moved, {"a": "http://127.0.0.1:9/v1", "b": "http://127.0.0.1:10/v1"}, a_priority=0)
    catalog.reconfigure(load_config(moved, KEYS))
    (offer,) = catalog.lookup("llama-3-70b-instruct") or ()
    assert (offer.priority, offer.base_url, catalog.source) == (7, "http://127.0.0.1:10/v1", "postgres")
    catalog.replace({}, source="postgres")  # a database that holds no active offer: the config serves
    assert catalog.source == "config" and catalog.lookup("gpt-4") is not None
