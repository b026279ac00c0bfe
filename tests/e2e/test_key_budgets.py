"""Client key names and per-key budgets over real sockets, with the official openai and anthropic SDKs:
the access line names the key (never the key itself), a bare key still works, and a key that spent its
budget on one instance is refused on every instance (Redis, or Postgres without it) before any provider
is asked, in the client's own error shape; a reload changes keys and budgets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import asyncpg
import httpx
import openai
import pytest
import redis

from proxy.client_keys import bare_key_name
from proxy.errors import BudgetExceeded
from proxy.mock.testing import free_port
from tests.e2e.test_serve import wait_ready
from tests.harness import CapturedLogs, gateway_config
from tests.health_helpers import wait_until

MESSAGES: Any = [{"role": "user", "content": "hi"}]
PRICES = {"a": (0.001, 0.002)}  # USD per token: every answer of the mock costs well over the budget below
KEYS = {"ALICE_KEY": "sk-alice-0123456789", "BOB_KEY": "sk-bob-9876543210"}
TINY = "0.000001"  # USD: spent by a single request
SYNC_S = 0.2


def budgeted(**settings: Any) -> list[dict[str, Any]]:
    return [
        {"name": "alice", "key_env": "ALICE_KEY", "budget_usd": TINY, "budget_period": "day", **settings},
        {"name": "bob", "key_env": "BOB_KEY", "budget_usd": 100, "budget_period": "month"},
    ]


def sdk(proxy: Any, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url, api_key=key, max_retries=0)


def chat(proxy: Any, key: str) -> Any:
    return sdk(proxy, key).chat.completions.create(model="gpt-4", messages=MESSAGES)


def access_lines(logs: CapturedLogs) -> list[dict[str, Any]]:
    return [json.loads(line) for line in logs.lines if line.startswith('{"request_id"')]


def spent(proxy: Any, name: str) -> bool:
    """The instance's own view says the key has spent its budget (as the request path would find)."""
    try:
        proxy.gateway.spend.check(name)
    except BudgetExceeded:
        return True
    return False


def assert_refused(proxy: Any, mock: Any, period: str) -> None:
    """alice's next request is refused with the 429, and no provider is asked."""
    key, name, budget = KEYS["ALICE_KEY"], "alice", TINY
    before = mock.stats()["requests"]
    with pytest.raises(openai.RateLimitError) as refused:
        chat(proxy, key)
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "budget_exceeded" and error["type"] == "insufficient_quota"
    message = error["message"]
    assert f"client key {name!r} has spent its budget of {budget} USD for this {period}" in message
    assert "it resets at " in message and key not in message
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert mock.stats()["requests"] == before, "a refused request reached a provider"


# --- names -----------------------------------------------------------------------------------------


def test_the_access_line_names_the_key_and_a_bare_key_still_works(mock_provider: Any, proxy_server: Any) -> None:
    mock = mock_provider("a")
    bare = "sk-bare-key-5555555555"
    env = {"FAILOVER_API_KEYS": f"alice:{KEYS['ALICE_KEY']},{bare}", **KEYS}
    proxy = proxy_server(gateway_config([("a", mock.url)], env=env, keys=[{"name": "bob", "key_env": "BOB_KEY"}]))
    with CapturedLogs().installed() as logs:
        for key in (KEYS["ALICE_KEY"], bare, KEYS["BOB_KEY"]):
            assert chat(proxy, key).choices[0].message.content
        with pytest.raises(openai.AuthenticationError):
            chat(proxy, "sk-nobody")
        anthropic.Anthropic(base_url=proxy.base, api_key=KEYS["BOB_KEY"], max_retries=0).messages.create(
            model="gpt-4", max_tokens=16, messages=MESSAGES
        )  # the anthropic SDK sends its key as x-api-key
        wait_until(lambda: len(access_lines(logs)) == 5)
    lines = access_lines(logs)
    assert [line["key"] for line in lines] == ["alice", bare_key_name(bare), "bob", None, "bob"]
    assert [line["status"] for line in lines] == [200, 200, 200, 401, 200]
    everything = "\n".join(logs.lines)
    assert not any(secret in everything for secret in (*KEYS.values(), bare))


# --- budgets on every instance -----------------------------------------------------------------------


def test_a_key_that_spent_its_budget_on_one_instance_is_refused_on_both_with_redis(
    mock_provider: Any, proxy_server: Any, redis_server_url: str, redis_prefix: str
) -> None:
    mock = mock_provider("a")
    env = {"REDIS_URL": redis_server_url, "FAILOVER_REDIS_PREFIX": redis_prefix, **KEYS}
    config = gateway_config([("a", mock.url)], env=env, prices=PRICES, keys=budgeted(), proxy={"budget_sync_s": SYNC_S})
    first, second = proxy_server(config), proxy_server(config)
    answer = chat(first, KEYS["ALICE_KEY"])
    assert answer.usage is not None and answer.usage.total_tokens > 0  # priced: the cost is over the budget
    assert_refused(first, mock, "day")  # at once on the instance that served it
    wait_until(lambda: spent(second, "alice"), timeout=5)  # within a sync interval on the other
    assert_refused(second, mock, "day")
    assert chat(second, KEYS["BOB_KEY"]).choices and chat(first, KEYS["BOB_KEY"]).choices  # another key is not stopped
    assert mock.stats()["requests"] == 3

    day = first.gateway.spend.period("day")
    counter = redis.Redis.from_url(redis_server_url).get(f"{redis_prefix}:spend:day:{day.label}:alice")
    cost = Decimal(answer.usage.prompt_tokens) * Decimal("0.001") + Decimal(answer.usage.completion_tokens) * Decimal("0.002")
    assert counter is not None and int(counter) == int(cost * 10**9)  # the request's exact cost, once


def test_the_same_without_redis_through_postgres(mock_provider: Any, proxy_server: Any, fresh_database_url: str) -> None:
    mock = mock_provider("a")
    env = {"DATABASE_URL": fresh_database_url, **KEYS}
    config = gateway_config([("a", mock.url)], env=env, prices=PRICES, keys=budgeted(), proxy={"budget_sync_s": SYNC_S})
    first, second = proxy_server(config), proxy_server(config)
    for instance in (first, second):
        wait_until(lambda i=instance: i.gateway.database_ok, timeout=10)
    assert chat(first, KEYS["ALICE_KEY"]).choices
    assert_refused(first, mock, "day")
    wait_until(lambda: spent(second, "alice"), timeout=5)
    assert_refused(second, mock, "day")
    assert chat(second, KEYS["BOB_KEY"]).choices

    def rows() -> list[tuple[str, str, int]]:
        async def read() -> list[tuple[str, str, int]]:
            conn = await asyncpg.connect(fresh_database_url)
            try:
                sql = "SELECT key_name, period, spent_nano_usd FROM key_spend ORDER BY key_name"
                return [tuple(r) for r in await conn.fetch(sql)]  # type: ignore[misc]
            finally:
                await conn.close()

        return asyncio.run(read())

    wait_until(lambda: len(rows()) == 2)  # bob's spend too, within a sync interval
    table = rows()
    assert [(name, period) for name, period, _ in table] == [("alice", "day"), ("bob", "month")]
    assert all(nanos > 0 for _, _, nanos in table)


def test_the_anthropic_sdk_gets_anthropics_error_shape(mock_provider: Any, proxy_server: Any) -> None:
    mock = mock_provider("a")
    config = gateway_config([("a", mock.url)], env=KEYS, prices=PRICES, keys=budgeted())
    proxy = proxy_server(config)
    client = anthropic.Anthropic(base_url=proxy.base, api_key=KEYS["ALICE_KEY"], max_retries=0)
    assert client.messages.create(model="gpt-4", max_tokens=16, messages=MESSAGES).content
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(model="gpt-4", max_tokens=16, messages=MESSAGES)
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "client key 'alice' has spent its budget" in body["error"]["message"]
    assert refused.value.status_code == 429 and mock.stats()["requests"] == 1


# --- reload ------------------------------------------------------------------------------------------

CONFIG = """
[proxy]
port = {port}
[[providers]]
slug = "a"
name = "A"
base_url = "{url}"
listing = "none"
[[models]]
model_id = "gpt-4"
offers = [{{ provider = "a", provider_model_id = "gpt-4", pricing_prompt = 0.001, pricing_completion = 0.002 }}]
[[keys]]
name = "alice"
key_env = "ALICE_KEY"
{alice}
{bob}
"""


def test_sighup_applies_new_keys_and_budgets(mock_provider: Any, fresh_database_url: str, tmp_path: Path) -> None:
    mock = mock_provider("a")
    port = free_port()
    config = tmp_path / "failover.toml"
    config.write_text(CONFIG.format(port=port, url=mock.url, alice="", bob=""))
    env = {**os.environ, "FAILOVER_CONFIG": str(config), "DATABASE_URL": fresh_database_url, **KEYS}
    for name in ("PROMETHEUS_MULTIPROC_DIR", "REDIS_URL", "FAILOVER_API_KEYS"):
        env.pop(name, None)
    log_path = tmp_path / "serve.log"
    proxy = type("Proxy", (), {"url": f"http://127.0.0.1:{port}/v1"})()
    with log_path.open("wb") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log_file
        )
        try:
            wait_ready(port, child)
            for _ in range(2):  # no budget: never refused
                assert chat(proxy, KEYS["ALICE_KEY"]).choices
            with pytest.raises(openai.AuthenticationError):
                chat(proxy, KEYS["BOB_KEY"])
            bob = '[[keys]]\nname = "bob"\nkey_env = "BOB_KEY"'
            config.write_text(CONFIG.format(port=port, url=mock.url, alice=f'budget_usd = "{TINY}"', bob=bob))
            child.send_signal(signal.SIGHUP)
            wait_until(lambda: "config reloaded" in log_path.read_text(), timeout=10)
            assert chat(proxy, KEYS["BOB_KEY"]).choices  # the new key opens the proxy
            assert chat(proxy, KEYS["ALICE_KEY"]).choices  # spend counts from when the budget is set
            assert_refused(proxy, mock, "month")
            httpx.get(f"http://127.0.0.1:{port}/readyz").raise_for_status()
        finally:
            child.terminate()
            child.wait(timeout=15)
    (line,) = [line for line in log_path.read_text().splitlines() if "config reloaded from" in line]
    assert f"key bob added, key alice budget (none -> {TINY} USD per month)" in line, line
    assert not any(secret in log_path.read_text() for secret in KEYS.values())
    assert mock.stats()["requests"] == 4
