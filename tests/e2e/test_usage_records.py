"""Usage records end to end: every request leaves exactly one row, priced exactly, readable by its caller.

Real sockets throughout: the proxy app on loopback (`tests.harness`), mock providers that report usage
as OpenAI does, a real Postgres (the shared server's fresh database, or one of the test's own that it
stops and starts), and the official openai SDK as the client. Each case checks the row against the
offer's prices to the last decimal, and the answer's headers and `GET /v1/generation` against the row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import openai
import pytest

from proxy.billing.cost import cost_text
from proxy.billing.usage_db import delete_old_usage, write_usage
from proxy.billing.usage_record import COLUMNS, UsageRecord
from proxy.commands.library import get_spend, get_usage, open_catalog
from proxy.config import Config, config_from_mapping
from tests.harness import CapturedLogs, ProxyServer, _data_dir
from tests.own_postgres import OwnPostgres, own_postgres

PRICES = {"good": ("0.0000123", "0.0000456"), "spare": ("0.0000017", "0.0000029"), "bad": ("0.0000001", "0.0000001")}
CHAT = [{"role": "user", "content": "hello there"}]
ADMIN = "admin-token-usage"


def build(
    urls: dict[str, str],
    models: dict[str, list[str]],
    *,
    database_url: str,
    fallbacks: dict[str, list[str]] | None = None,
    client_keys: str = "",
) -> Config:
    """Providers by slug; each model's offers (`<slug>/<model>`) priced from PRICES; usage flushed every 0.2 s."""
    providers = [{"slug": s, "name": s.title(), "base_url": u, "listing": "none"} for s, u in urls.items()]
    tables = []
    for model, slugs in models.items():
        offers = [
            {"provider": s, "provider_model_id": f"{s}/{model}", "pricing_prompt": float(PRICES[s][0]),
             "pricing_completion": float(PRICES[s][1])}
            for s in slugs
        ]  # fmt: skip
        tables.append({"model_id": model, "offers": offers, "fallbacks": (fallbacks or {}).get(model, [])})
    data = {
        "proxy": {"first_byte_timeout_s": 5, "stream_idle_timeout_s": 5, "deadline_s": 20},
        "providers": providers,
        "models": tables,
        "usage": {"flush_s": 0.2},
    }
    env = {"FAILOVER_DATA_DIR": _data_dir(), "DATABASE_URL": database_url, "FAILOVER_ADMIN_TOKEN": ADMIN,
           "FAILOVER_API_KEYS": client_keys}  # fmt: skip
    return config_from_mapping(data, "(test)", env)


def row_attempts(row: asyncpg.Record) -> list[dict[str, Any]]:
    attempts = row["attempts"]
    return list(json.loads(attempts) if isinstance(attempts, str) else attempts)


def expected_cost(provider: str, prompt: int, completion: int) -> Decimal:
    price_prompt, price_completion = (Decimal(p) for p in PRICES[provider])
    return prompt * price_prompt + completion * price_completion


async def rows_of(url: str, *request_ids: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch("SELECT * FROM usage_records WHERE request_id = ANY($1::text[])", list(request_ids)))
    finally:
        await conn.close()


async def wait_rows(url: str, *request_ids: str, timeout_s: float = 15.0) -> list[asyncpg.Record]:
    """The rows of these requests once every one is in the table."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await rows_of(url, *request_ids)
        if len(found) >= len(set(request_ids)) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def wait_for(found: Callable[[], list[str]], timeout_s: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while not (lines := found()) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return lines


def generation(proxy: ProxyServer, request_id: str, token: str = "k") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{proxy.url}/generation", params={"id": request_id}, headers=headers, timeout=10)


def sdk(proxy: ProxyServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)


def check_row(row: asyncpg.Record, provider: str, prompt: int, completion: int) -> None:
    cost = expected_cost(provider, prompt, completion)
    assert (row["provider"], row["prompt_tokens"], row["completion_tokens"]) == (provider, prompt, completion)
    assert row["cost_usd"] == cost and row["priced"] is True
    assert (row["price_prompt"], row["price_completion"]) == tuple(Decimal(p) for p in PRICES[provider])


def check_generation(proxy: ProxyServer, row: asyncpg.Record) -> None:
    answer = generation(proxy, row["request_id"])
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert Decimal(data["cost_usd"]) == row["cost_usd"] == Decimal(str(data["total_cost"]))
    assert (data["id"], data["provider_name"], data["streamed"]) == (row["request_id"], row["provider"], row["streamed"])
    assert (data["tokens_prompt"], data["tokens_completion"]) == (row["prompt_tokens"], row["completion_tokens"])


@pytest.fixture
def served(fresh_database_url: str, mock_provider: Any, proxy_server: Callable[..., ProxyServer]) -> Iterator[Any]:
    """A proxy over `good` (priced) and `bad` (answers 503), with gpt-4 on bad then good, and
    gpt-3.5-turbo on bad alone, falling back to gpt-4o-mini on spare."""
    good = mock_provider("good")
    bad = mock_provider("bad", fault="status", status=503)
    spare = mock_provider("spare", models=("gpt-4o-mini",))
    urls = {"good": good.url, "bad": bad.url, "spare": spare.url}
    models = {"gpt-4": ["bad", "good"], "solo": ["good"], "gpt-3.5-turbo": ["bad"], "gpt-4o-mini": ["spare"],
              "broken": ["bad"]}  # fmt: skip
    config = build(urls, models, database_url=fresh_database_url, fallbacks={"gpt-3.5-turbo": ["gpt-4o-mini"]})
    yield proxy_server(config), fresh_database_url, good


async def test_a_whole_answer_has_its_cost_in_headers_generation_and_one_row(served: Any) -> None:
    proxy, url, _ = served
    with CapturedLogs().installed() as logs:
        raw = sdk(proxy).chat.completions.with_raw_response.create(model="solo", messages=CHAT)
        answer = raw.parse()
        request_id = raw.headers["x-request-id"]
        [line] = await wait_for(lambda: [ln for ln in logs.lines if request_id in ln and ln.startswith("{")])
    usage = answer.usage
    assert usage is not None
    cost = expected_cost("good", usage.prompt_tokens, usage.completion_tokens)
    assert Decimal(raw.headers["x-gatewayz-cost-usd"]) == cost
    assert "e" not in raw.headers["x-gatewayz-cost-usd"].lower()
    assert int(raw.headers["x-gatewayz-prompt-tokens"]) == usage.prompt_tokens
    assert int(raw.headers["x-gatewayz-completion-tokens"]) == usage.completion_tokens
    early = generation(proxy, request_id)  # asked at once: found before it is flushed (or just after)
    assert early.status_code == 200 and Decimal(early.json()["data"]["cost_usd"]) == cost
    [row] = await wait_rows(url, request_id)
    check_row(row, "good", usage.prompt_tokens, usage.completion_tokens)
    assert (row["status"], row["outcome"], row["finish_reason"], row["streamed"]) == (200, "ok", "stop", False)
    access = json.loads(line)  # the access line says the same
    assert (access["prompt_tokens"], Decimal(access["cost_usd"])) == (usage.prompt_tokens, cost)
    assert (row["model"], row["asked_model"], row["route"]) == ("solo", "solo", "/v1/chat/completions")
    check_generation(proxy, row)


async def test_a_stream_with_include_usage_is_priced_from_its_usage_chunk(served: Any) -> None:
    proxy, url, _ = served
    raw = sdk(proxy).chat.completions.with_raw_response.create(
        model="solo", messages=CHAT, stream=True, stream_options={"include_usage": True}
    )
    request_id = raw.headers["x-request-id"]
    chunks = list(raw.parse())
    usage = next(c.usage for c in chunks if c.usage is not None)
    [row] = await wait_rows(url, request_id)
    check_row(row, "good", usage.prompt_tokens, usage.completion_tokens)
    assert (row["streamed"], row["outcome"], row["first_output_ms"] is not None) == (True, "ok", True)
    check_generation(proxy, row)


async def test_a_stream_without_include_usage_is_priced_and_its_client_sees_no_usage(served: Any) -> None:
    proxy, url, _ = served
    client = sdk(proxy)
    asked = list(client.chat.completions.create(
        model="solo", messages=CHAT, stream=True, stream_options={"include_usage": True}
    ))  # fmt: skip
    usage = next(c.usage for c in asked if c.usage is not None)  # what the provider reports for this prompt
    raw = client.chat.completions.with_raw_response.create(model="solo", messages=CHAT, stream=True)
    request_id = raw.headers["x-request-id"]
    chunks = list(raw.parse())
    assert chunks and all(c.usage is None and c.choices for c in chunks)  # no usage chunk: it did not ask
    [row] = await wait_rows(url, request_id)
    check_row(row, "good", usage.prompt_tokens, usage.completion_tokens)  # the provider's usage, not a guess
    assert (row["streamed"], row["usage_estimated"], row["finish_reason"]) == (True, False, "stop")
    check_generation(proxy, row)


async def test_a_stream_from_an_offer_that_refuses_the_usage_ask_is_recorded_as_estimated(
    fresh_database_url: str, mock_provider: Any, proxy_server: Callable[..., ProxyServer]
) -> None:
    good = mock_provider("good", refuse_stream_options=True)
    proxy = proxy_server(build({"good": good.url}, {"solo": ["good"]}, database_url=fresh_database_url))
    raw = sdk(proxy).chat.completions.with_raw_response.create(model="solo", messages=CHAT, stream=True)
    request_id = raw.headers["x-request-id"]
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    [row] = await wait_rows(fresh_database_url, request_id)
    assert row["usage_estimated"] is True and row["outcome"] == "ok"
    assert row["completion_tokens"] == -(-len(text.encode()) // 4)  # 4 characters a token, rounded up
    assert row["cost_usd"] == expected_cost("good", row["prompt_tokens"], row["completion_tokens"])
    assert [a["outcome"] for a in row_attempts(row)] == ["ok"]  # the refusal is the offer's limit, not a failure


async def test_a_failover_is_priced_at_the_offer_that_served_and_the_failed_attempt_is_free(served: Any) -> None:
    proxy, url, _ = served
    raw = sdk(proxy).chat.completions.with_raw_response.create(model="gpt-4", messages=CHAT)
    usage = raw.parse().usage
    assert usage is not None
    request_id = raw.headers["x-request-id"]
    [row] = await wait_rows(url, request_id)
    check_row(row, "good", usage.prompt_tokens, usage.completion_tokens)
    attempts = json.loads(row["attempts"])
    assert [(a["provider"], a["outcome"]) for a in attempts] == [("bad", "503"), ("good", "ok")]
    assert Decimal(raw.headers["x-gatewayz-cost-usd"]) == row["cost_usd"]
    check_generation(proxy, row)


async def test_a_model_fallback_is_priced_at_the_fallback_models_offer(served: Any) -> None:
    proxy, url, _ = served
    raw = sdk(proxy).chat.completions.with_raw_response.create(model="gpt-3.5-turbo", messages=CHAT)
    usage = raw.parse().usage
    assert usage is not None
    [row] = await wait_rows(url, raw.headers["x-request-id"])
    check_row(row, "spare", usage.prompt_tokens, usage.completion_tokens)
    assert (row["asked_model"], row["model"]) == ("gpt-3.5-turbo", "gpt-4o-mini")
    check_generation(proxy, row)


async def test_a_503_leaves_one_row_that_costs_nothing(served: Any) -> None:
    proxy, url, _ = served
    with pytest.raises(openai.InternalServerError) as info:
        sdk(proxy).chat.completions.create(model="broken", messages=CHAT)
    request_id = info.value.response.headers["x-request-id"]
    assert "x-gatewayz-cost-usd" not in info.value.response.headers
    [row] = await wait_rows(url, request_id)
    assert (row["status"], row["outcome"], row["provider"]) == (503, "all_providers_failed", None)
    assert (row["cost_usd"], row["priced"], row["prompt_tokens"]) == (Decimal(0), True, 0)
    assert [a["outcome"] for a in json.loads(row["attempts"])] == ["503"]
    check_generation(proxy, row)


async def test_a_stream_cut_mid_way_leaves_one_row(served: Any) -> None:
    proxy, url, good = served
    good.set_faults(fault="cut", after_chunks=3)
    raw = sdk(proxy).chat.completions.with_raw_response.create(
        model="solo", messages=CHAT, stream=True, stream_options={"include_usage": True}
    )
    request_id = raw.headers["x-request-id"]
    with pytest.raises(openai.APIError):
        list(raw.parse())
    [row] = await wait_rows(url, request_id)
    assert row["outcome"] != "ok" and row["streamed"] is True and row["provider"] == "good"
    check_row(row, "good", row["prompt_tokens"], row["completion_tokens"])  # whatever usage it reported, priced
    check_generation(proxy, row)


async def test_generation_is_only_for_its_caller_or_the_admin(served: Any) -> None:
    proxy, url, _ = served
    raw = sdk(proxy).chat.completions.with_raw_response.create(model="solo", messages=CHAT)
    request_id = raw.headers["x-request-id"]
    await wait_rows(url, request_id)
    assert generation(proxy, request_id, token=ADMIN).status_code == 200
    missing = generation(proxy, "no-such-request")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = httpx.get(f"{proxy.url}/generation", headers={"Authorization": "Bearer k"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "id"


async def test_with_client_keys_generation_needs_a_key(
    fresh_database_url: str, mock_provider: Any, proxy_server: Callable[..., ProxyServer]
) -> None:
    good = mock_provider("good")
    config = build({"good": good.url}, {"solo": ["good"]}, database_url=fresh_database_url, client_keys="k")
    proxy = proxy_server(config)
    raw = sdk(proxy).chat.completions.with_raw_response.create(model="solo", messages=CHAT)
    request_id = raw.headers["x-request-id"]
    assert generation(proxy, request_id).status_code == 200  # the key that made it
    assert generation(proxy, request_id, token=ADMIN).status_code == 200
    refused = generation(proxy, request_id, token="not-a-key")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert request_id not in refused.text


async def test_a_named_key_reads_its_own_records_and_not_another_keys(
    fresh_database_url: str, mock_provider: Any, proxy_server: Callable[..., ProxyServer]
) -> None:
    good = mock_provider("good")
    keys = "alice:key-of-alice,bob:key-of-bob"
    proxy = proxy_server(build({"good": good.url}, {"solo": ["good"]}, database_url=fresh_database_url, client_keys=keys))
    alice = openai.OpenAI(base_url=proxy.url, api_key="key-of-alice", max_retries=0)
    request_id = alice.chat.completions.with_raw_response.create(model="solo", messages=CHAT).headers["x-request-id"]
    assert generation(proxy, request_id, token="key-of-alice").status_code == 200
    other = generation(proxy, request_id, token="key-of-bob")
    assert other.status_code == 404 and request_id in other.text  # as if it did not exist: no hint it does
    [row] = await wait_rows(fresh_database_url, request_id)
    assert row["key_name"] == "alice"
    assert "key-of-alice" not in str(dict(row))


async def test_admin_usage_aggregates_by_model_and_day(served: Any) -> None:
    proxy, url, _ = served
    client = sdk(proxy)
    ids = []
    for model in ("solo", "solo", "gpt-4"):
        ids.append(client.chat.completions.with_raw_response.create(model=model, messages=CHAT).headers["x-request-id"])
    rows = await wait_rows(url, *ids)
    headers = {"Authorization": f"Bearer {ADMIN}"}
    answer = httpx.get(f"{proxy.base}/admin/usage", params={"group_by": "model,day"}, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    by_model = {entry["model"]: entry for entry in body["data"]}
    assert by_model["solo"]["requests"] == 2 and by_model["gpt-4"]["requests"] == 1
    assert Decimal(body["totals"]["cost_usd"]) == sum((r["cost_usd"] for r in rows), Decimal(0))
    refused = httpx.get(f"{proxy.base}/admin/usage", params={"group_by": "colour"}, headers=headers, timeout=10)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "group_by"
    assert httpx.get(f"{proxy.base}/admin/usage", timeout=10).status_code == 401


async def test_cli_and_library_read_the_same_spend(served: Any) -> None:
    proxy, url, _ = served
    raw = sdk(proxy).chat.completions.with_raw_response.create(model="solo", messages=CHAT)
    [row] = await wait_rows(url, raw.headers["x-request-id"])
    async with open_catalog(url) as pool:
        record = await get_usage(pool, row["request_id"])
        assert record is not None and record["cost_usd"] == row["cost_usd"]
        assert record["attempts"][0]["provider"] == "good"
        [spent] = await get_spend(pool, row["created_at"], row["created_at"] + timedelta(seconds=1), ("provider",))
        assert (spent["provider"], spent["requests"], spent["cost_usd"]) == ("good", 1, row["cost_usd"])
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "usage", "--group-by", "key,model", "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert [(d["model"], d["requests"], Decimal(d["cost_usd"])) for d in body["data"]] == [("solo", 1, row["cost_usd"])]
    table = subprocess.run([sys.executable, "-m", "proxy.cli", "usage", "--group-by", "day"], env=env,
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert table.returncode == 0 and cost_text(row["cost_usd"]) in table.stdout
    wrong = subprocess.run([sys.executable, "-m", "proxy.cli", "usage", "--since", "yesterday"], env=env,
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert wrong.returncode == 2 and "--since: not an ISO 8601 time" in wrong.stderr


# --- Postgres away: the spool ------------------------------------------------------------------------


@pytest.fixture
def postgres() -> Iterator[OwnPostgres]:
    with own_postgres() as server:
        yield server


async def test_postgres_stopped_under_a_trickle_every_record_arrives_once(
    mock_provider: Any, proxy_server: Callable[..., ProxyServer], postgres: OwnPostgres, tmp_path: Any
) -> None:
    good = mock_provider("good")
    config = build({"good": good.url}, {"solo": ["good"]}, database_url=postgres.url)
    config = dataclasses.replace(config, data_dir=str(tmp_path / "data"))
    proxy = proxy_server(config)
    client = sdk(proxy)
    sent: list[str] = []

    def trickle(count: int) -> None:
        for _ in range(count):
            raw = client.chat.completions.with_raw_response.create(model="solo", messages=CHAT)
            sent.append(raw.headers["x-request-id"])
            time.sleep(0.05)

    trickle(5)
    assert len(await wait_rows(postgres.url, *sent)) == 5
    postgres.stop()
    trickle(20)  # Postgres is down: these records go to the spool
    deadline = time.monotonic() + 10
    while proxy.metric("gatewayz_usage_records_total", result="spooled") < 20 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert proxy.metric("gatewayz_usage_records_total", result="spooled") == 20
    assert generation(proxy, sent[-1]).status_code == 200  # read from the spool while the database is away
    postgres.start()
    trickle(5)
    rows = await wait_rows(postgres.url, *sent, timeout_s=30)
    assert sorted(r["request_id"] for r in rows) == sorted(sent)
    conn = await asyncpg.connect(postgres.url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM usage_records") == len(sent) == 30
    finally:
        await conn.close()
    assert proxy.metric("gatewayz_usage_records_total", result="dropped") == 0
    assert not list((tmp_path / "data").glob("usage-spool.*"))  # written, then removed


async def test_retention_deletes_old_records_in_batches_and_a_replay_counts_nothing_twice(served: Any) -> None:
    proxy, url, _ = served
    raw = sdk(proxy).chat.completions.with_raw_response.create(model="solo", messages=CHAT)
    [row] = await wait_rows(url, raw.headers["x-request-id"])
    recent = UsageRecord(**{name: row[name] for name in COLUMNS})
    old = [recent._replace(request_id=f"old-{i}", created_at=recent.created_at - timedelta(days=100)) for i in range(5)]
    async with open_catalog(url) as pool:
        assert await write_usage(pool, old) == 5
        assert await write_usage(pool, [*old, recent]) == 0  # a replayed batch: nothing inserted twice
        assert await delete_old_usage(pool, 90, batch=2) == 5  # three statements of at most two rows
        left = await pool.fetch("SELECT request_id FROM usage_records")
    assert [r["request_id"] for r in left] == [recent.request_id]
