"""Catalog sync against real listing servers on loopback: both formats, aliases, broken listings,
offers that disappear, static offers, dry runs, and the CLI's output and exit codes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from proxy.cli import main
from proxy.commands.listing import fetch_listing
from proxy.commands.sync import ProviderReport, sync_catalog
from proxy.config import Config, ProviderConfig, Secret
from proxy.errors import ConfigError
from proxy.store.offers import load_offers
from tests.catalog_helpers import (
    ListingServer,
    config_from_toml,
    listing_server,
    migrated_pool,
    openai_listing,
    openrouter_listing,
    threaded_listing_server,
)

CONFIG = """
[[providers]]
slug = "openrouter"
name = "OpenRouter"
base_url = "{openrouter}"
api_key_env = "OR_KEY"
listing = "openrouter"

[[providers]]
slug = "plain"
name = "Plain"
base_url = "{plain}"
listing = "openai"
priority = 1

[[providers]]
slug = "featherless"
name = "Featherless"
base_url = "http://127.0.0.1:9/v1"
listing = "none"
priority = 2

[[models]]
model_id = "gpt-4"

[[models.offers]]
provider = "featherless"
provider_model_id = "gpt-4"
pricing_prompt = 0.00002
pricing_completion = 0.00004

[aliases]
"meta-llama/Meta-Llama-3-70B-Instruct" = "llama-3-70b-instruct"
"""

PLAIN_TABLE = """
[[providers]]
slug = "plain"
name = "Plain"
base_url = "{plain}"
listing = "openai"
priority = 1
"""
OPENROUTER = openrouter_listing(
    ("openai/gpt-4", "0.00003", "0.00006", 8191),
    ("meta-llama/llama-3-70b-instruct", "0.00000059", "0.00000079", 8192),
)
STATIC_OPENROUTER_OFFER = """
[[models.offers]]  # appended to the gpt-4 [[models]] entry
provider = "openrouter"
provider_model_id = "meta-llama/llama-3-70b-instruct"
pricing_prompt = 0.000001
"""
PLAIN = openai_listing("gpt-4", "meta-llama/Meta-Llama-3-70B-Instruct")


def serve_both(server: ListingServer) -> dict[str, str]:
    return {"openrouter": server.add("openrouter", OPENROUTER), "plain": server.add("plain", PLAIN)}


def make_config(urls: dict[str, str]) -> Config:
    return config_from_toml(CONFIG.format(**urls), {"OR_KEY": "sk-or-secret"})


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_pool(fresh_database_url) as pool:
        yield pool


async def offers(pool: asyncpg.Pool) -> dict[tuple[str, str], asyncpg.Record]:
    rows = await pool.fetch(
        "SELECT p.slug, m.provider_model_id, m.model_id, m.pricing_prompt, m.pricing_completion,"
        " m.context_length, m.is_active FROM models m JOIN providers p ON p.id = m.provider_id"
    )
    return {(r["slug"], r["provider_model_id"]): r for r in rows}


def lines(reports: list[ProviderReport]) -> list[str]:
    return [r.line() for r in reports]


async def test_both_formats_aliases_static_offers_and_prices_per_token(pool: asyncpg.Pool) -> None:
    async with listing_server() as server:
        reports = await sync_catalog(pool, make_config(serve_both(server)), fetch_listing)
    assert lines(reports) == [
        "OpenRouter: 2 models synced (2 added, 0 updated, 0 deactivated)",
        "Plain: 2 models synced (2 added, 0 updated, 0 deactivated)",
        "Featherless: 1 models synced (1 added, 0 updated, 0 deactivated)",
    ]
    rows = await offers(pool)
    assert {key: r["model_id"] for key, r in rows.items()} == {
        ("openrouter", "openai/gpt-4"): "gpt-4",
        ("openrouter", "meta-llama/llama-3-70b-instruct"): "llama-3-70b-instruct",
        ("plain", "gpt-4"): "gpt-4",
        ("plain", "meta-llama/Meta-Llama-3-70B-Instruct"): "llama-3-70b-instruct",
        ("featherless", "gpt-4"): "gpt-4",
    }
    gpt4 = rows[("openrouter", "openai/gpt-4")]
    assert (gpt4["pricing_prompt"], gpt4["pricing_completion"], gpt4["context_length"]) == (
        Decimal("0.00003"),
        Decimal("0.00006"),
        8191,
    )
    assert rows[("featherless", "gpt-4")]["pricing_prompt"] == Decimal("0.00002")
    assert rows[("plain", "gpt-4")]["pricing_prompt"] is None
    catalog = await load_offers(pool)
    assert sorted(o.provider_slug for o in catalog["gpt-4"]) == ["featherless", "openrouter", "plain"]


async def test_the_key_goes_only_to_its_own_provider(pool: asyncpg.Pool) -> None:
    async with listing_server() as server:
        await sync_catalog(pool, make_config(serve_both(server)), fetch_listing)
    assert server.listings["openrouter"].authorization == ["Bearer sk-or-secret"]
    assert server.listings["plain"].authorization == [None]


async def test_every_offer_gets_a_health_tracking_row(pool: asyncpg.Pool) -> None:
    async with listing_server() as server:
        await sync_catalog(pool, make_config(serve_both(server)), fetch_listing)
    rows = await pool.fetch(
        "SELECT t.provider, t.model, m.provider_model_id"
        " FROM models m JOIN model_health_tracking t ON t.offer_id = m.id"
    )
    assert len(rows) == 5
    assert all(r["model"] == r["provider_model_id"] for r in rows)


@pytest.mark.parametrize(("status", "body"), [(500, b'{"error": "down"}'), (200, b'{"data": [{"id": 4')])
async def test_a_broken_listing_is_reported_and_the_others_still_sync(
    pool: asyncpg.Pool, status: int, body: bytes
) -> None:
    async with listing_server() as server:
        urls = serve_both(server)
        urls["plain"] = server.add("plain", body=body, status=status)
        reports = await sync_catalog(pool, make_config(urls), fetch_listing)
    failed = [r for r in reports if r.error]
    assert [r.slug for r in failed] == ["plain"]
    line = failed[0].line()
    assert line.startswith("Plain: listing FAILED (Plain listing http://127.0.0.1:")
    assert line.endswith("(failed sync 1 of 3 before its listed offers are deactivated)")
    assert {slug for slug, _ in await offers(pool)} == {"openrouter", "featherless"}


async def test_a_model_that_disappeared_is_deactivated_not_deleted(pool: asyncpg.Pool) -> None:
    async with listing_server() as server:
        config = make_config(serve_both(server))
        await sync_catalog(pool, config, fetch_listing)
        server.listings["openrouter"].set_json(
            openrouter_listing(("openai/gpt-4", "0.00003", "0.00006", 8191))
        )
        reports = await sync_catalog(pool, config, fetch_listing, only=["openrouter"])
        gone = (await offers(pool))[("openrouter", "meta-llama/llama-3-70b-instruct")]
        catalog = await load_offers(pool)
        server.listings["openrouter"].set_json(OPENROUTER)
        back = await sync_catalog(pool, config, fetch_listing, only=["openrouter"])
    assert lines(reports) == ["OpenRouter: 1 models synced (0 added, 0 updated, 1 deactivated)"]
    assert gone["is_active"] is False
    assert [o.provider_slug for o in catalog["llama-3-70b-instruct"]] == ["plain"]
    assert lines(back) == ["OpenRouter: 2 models synced (0 added, 1 updated, 0 deactivated)"]
    assert (await offers(pool))[("openrouter", "meta-llama/llama-3-70b-instruct")]["is_active"] is True


async def test_a_price_change_is_an_update_and_an_unchanged_listing_is_not(pool: asyncpg.Pool) -> None:
    async with listing_server() as server:
        config = make_config(serve_both(server))
        await sync_catalog(pool, config, fetch_listing)
        same = await sync_catalog(pool, config, fetch_listing, only=["openrouter"])
        server.listings["openrouter"].set_json(
            openrouter_listing(
                ("openai/gpt-4", "0.00002", "0.00006", 8191),
                ("meta-llama/llama-3-70b-instruct", "0.00000059", "0.00000079", 8192),
            )
        )
        changed = await sync_catalog(pool, config, fetch_listing, only=["openrouter"])
    assert lines(same) == ["OpenRouter: 2 models synced (0 added, 0 updated, 0 deactivated)"]
    assert lines(changed) == ["OpenRouter: 2 models synced (0 added, 1 updated, 0 deactivated)"]
    assert (await offers(pool))[("openrouter", "openai/gpt-4")]["pricing_prompt"] == Decimal("0.00002")


async def test_a_static_offer_wins_over_the_listing(pool: asyncpg.Pool) -> None:
    async with listing_server() as server:
        urls = serve_both(server)
        text = CONFIG.format(**urls) + STATIC_OPENROUTER_OFFER
        await sync_catalog(pool, config_from_toml(text), fetch_listing)
    row = (await offers(pool))[("openrouter", "meta-llama/llama-3-70b-instruct")]
    assert row["model_id"] == "gpt-4"  # the static [[models]] entry names the canonical id
    assert row["pricing_prompt"] == Decimal("0.000001")  # its price wins where it sets one
    assert row["pricing_completion"] == Decimal("0.00000079")  # the listing's fills the rest


async def test_a_provider_dropped_from_the_config_is_deactivated(pool: asyncpg.Pool) -> None:
    async with listing_server() as server:
        config = make_config(serve_both(server))
        await sync_catalog(pool, config, fetch_listing)
        without_plain = replace(config, providers=tuple(p for p in config.providers if p.slug != "plain"))
        reports = await sync_catalog(pool, without_plain, fetch_listing)
    assert reports[-1].line() == "Plain: no longer in the config: provider deactivated"
    assert sorted(o.provider_slug for o in (await load_offers(pool))["gpt-4"]) == [
        "featherless",
        "openrouter",
    ]


async def test_providers_limits_the_sync_and_must_name_configured_ones(pool: asyncpg.Pool) -> None:
    async with listing_server() as server:
        config = make_config(serve_both(server))
        reports = await sync_catalog(pool, config, fetch_listing, only=["plain"])
        with pytest.raises(ConfigError, match="--providers: unknown provider\\(s\\) nope"):
            await sync_catalog(pool, config, fetch_listing, only=["nope"])
    assert [r.slug for r in reports] == ["plain"]
    assert {slug for slug, _ in await offers(pool)} == {"plain"}
    assert server.listings["openrouter"].authorization == []


def write_config(tmp_path: Path, urls: dict[str, str]) -> str:
    path = tmp_path / "failover.toml"
    path.write_text(CONFIG.format(**urls))
    return str(path)


def test_cli_sync_prints_per_provider_and_exits_1_when_one_failed(
    fresh_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    with threaded_listing_server() as server:
        urls = serve_both(server)
        config = write_config(tmp_path, urls)
        assert main(["--config", config, "migrate"]) == 0
        assert main(["--config", config, "sync"]) == 0
        assert "OpenRouter: 2 models synced (2 added, 0 updated, 0 deactivated)" in capsys.readouterr().out
        server.add("plain", body=b"not json")
        assert main(["--config", config, "sync"]) == 1
    out = capsys.readouterr().out
    assert "Plain: listing FAILED (" in out and "not valid JSON" in out
    assert "kept its 2 offers as they were (failed sync 1 of 3" in out
    assert "OpenRouter: 2 models synced (0 added, 0 updated, 0 deactivated)" in out


def test_cli_dry_run_prints_the_mapping_and_writes_nothing(
    fresh_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    with threaded_listing_server() as server:
        config = write_config(tmp_path, serve_both(server))
        assert main(["--config", config, "migrate"]) == 0
        assert main(["--config", config, "sync", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "  openai/gpt-4 -> gpt-4\n" in out
    assert "  meta-llama/Meta-Llama-3-70B-Instruct -> llama-3-70b-instruct  (alias)" in out
    assert "  gpt-4 -> gpt-4  (static)" in out
    assert "dry run: nothing was written" in out

    async def count() -> int:
        conn = await asyncpg.connect(fresh_database_url)
        try:
            value: int = await conn.fetchval(
                "SELECT (SELECT count(*) FROM providers) + (SELECT count(*) FROM models)"
            )
            return value
        finally:
            await conn.close()

    assert asyncio.run(count()) == 0


def test_cli_unknown_provider_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, {"openrouter": "http://127.0.0.1:9/a", "plain": "http://127.0.0.1:9/b"})
    assert main(["--config", config, "sync", "--providers", "nope", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "unknown provider(s) nope (known: openrouter, plain, featherless)" in err
    assert "Traceback" not in err


def test_cli_dry_run_prints_what_sync_would_deactivate_and_sync_then_does(
    fresh_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("OR_KEY", "sk-or-secret")
    with threaded_listing_server() as server:
        urls = serve_both(server)
        config = write_config(tmp_path, urls)
        assert main(["--config", config, "migrate"]) == 0
        assert main(["--config", config, "sync"]) == 0
        capsys.readouterr()
        # the listing drops a model, and the config drops the provider `plain`
        server.add("openrouter", openrouter_listing(("openai/gpt-4", "0.00003", "0.00006", 8191)))
        text = Path(config).read_text()
        Path(config).write_text(text.replace(PLAIN_TABLE.format(plain=urls["plain"]), ""))
        assert main(["sync", "--dry-run", "--config", config]) == 0
        dry = capsys.readouterr().out
        assert main(["sync", "--config", config]) == 0
        done = capsys.readouterr().out
    assert "  meta-llama/llama-3-70b-instruct would be deactivated (no longer listed or configured)" in dry
    assert "Plain: no longer in the config: provider would be deactivated" in dry
    assert dry.rstrip().endswith("dry run: nothing was written")
    assert "OpenRouter: 1 models synced (0 added, 0 updated, 1 deactivated)" in done
    assert "Plain: no longer in the config: provider deactivated" in done


def test_cli_dry_run_without_a_catalog_creates_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("FAILOVER_DATA_DIR", str(tmp_path / "data"))
    with threaded_listing_server() as server:
        config = write_config(tmp_path, serve_both(server))
        assert main(["sync", "--dry-run", "--config", config]) == 0
    assert "dry run: nothing was written; no catalog yet: nothing to deactivate" in capsys.readouterr().out
    assert not (tmp_path / "data").exists()


# --- capabilities and Together (issue 12) ---------------------------------------------------------

CAPABILITIES_CONFIG = """
[[providers]]
slug = "openrouter"
name = "OpenRouter"
base_url = "{openrouter}"
listing = "openrouter"

[[providers]]
slug = "together"
name = "Together"
base_url = "{together}"
listing = "together"

[[providers]]
slug = "selfhosted"
name = "Self-hosted vLLM"
base_url = "http://127.0.0.1:9/v1"
listing = "none"

[[models]]
model_id = "llama-3.3-70b-instruct-turbo"

[[models.offers]]
provider = "selfhosted"
provider_model_id = "llama-70b"
context_length = 32768
max_completion_tokens = 4096
supported_parameters = ["tools", "tool_choice", "seed"]
input_modalities = ["text"]
"""


def capability_listings(server: ListingServer) -> dict[str, str]:
    from tests.unit.test_listing import OPENROUTER_GPT4O, TOGETHER

    return {
        "openrouter": server.add("openrouter", {"data": [OPENROUTER_GPT4O]}),
        "together": server.add("together", TOGETHER),
    }


async def test_capabilities_and_together_prices_are_synced_per_token(pool: asyncpg.Pool) -> None:
    async with listing_server() as server:
        config = config_from_toml(CAPABILITIES_CONFIG.format(**capability_listings(server)))
        reports = await sync_catalog(pool, config, fetch_listing)
    assert not any(r.error for r in reports)
    rows = {
        (r["slug"], r["provider_model_id"]): r
        for r in await pool.fetch(
            "SELECT p.slug, m.* FROM models m JOIN providers p ON p.id = m.provider_id"
        )
    }
    together = rows[("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo")]
    assert (together["pricing_prompt"], together["pricing_completion"]) == (Decimal("0.00000088"), Decimal("0.00000088"))
    assert together["context_length"] == 131072
    assert together["supported_parameters"] is None and together["max_completion_tokens"] is None  # unknown, not guessed
    gpt4o = rows[("openrouter", "openai/gpt-4o")]
    assert gpt4o["max_completion_tokens"] == 16384
    assert gpt4o["input_modalities"] == ["file", "image", "text"]
    assert "structured_outputs" in gpt4o["supported_parameters"]
    static = rows[("selfhosted", "llama-70b")]
    assert (static["context_length"], static["max_completion_tokens"]) == (32768, 4096)
    assert static["supported_parameters"] == ["seed", "tool_choice", "tools"]
    catalog = await load_offers(pool)
    [offer] = catalog["gpt-4o"]
    assert offer.supported_parameters is not None and "tools" in offer.supported_parameters
    assert offer.input_modalities == {"text", "image", "file"}
    assert offer.max_completion_tokens == 16384 and offer.context_length == 128000
    assert {o.provider_slug for o in catalog["llama-3.3-70b-instruct-turbo"]} == {"together", "selfhosted"}
    async with listing_server() as server:  # the same listings again: nothing changed, nothing updated
        config = config_from_toml(CAPABILITIES_CONFIG.format(**capability_listings(server)))
        again = await sync_catalog(pool, config, fetch_listing)
    assert [r.updated for r in again] == [0, 0, 0]


def test_cli_dry_run_prints_capabilities(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with threaded_listing_server() as server:
        path = tmp_path / "failover.toml"
        path.write_text(CAPABILITIES_CONFIG.format(**capability_listings(server)))
        assert main(["--config", str(path), "sync", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "  openai/gpt-4o -> gpt-4o\n      context 128000, max completion 16384, parameters " in out
    assert "input file,image,text" in out
    assert (
        "  meta-llama/Llama-3.3-70B-Instruct-Turbo -> llama-3.3-70b-instruct-turbo\n"
        "      context 131072, max completion ?, parameters ?, input ?" in out
    )
    assert "  llama-70b -> llama-3.3-70b-instruct-turbo  (static)\n      context 32768, max completion 4096" in out


async def test_an_anthropic_speaking_provider_is_listed_with_its_own_key_header(mock_provider: Any) -> None:
    claude = mock_provider("claude", models=("claude-sonnet-4-5", "claude-haiku-4-5"), api_key="sk-ant-listing-123")
    provider = ProviderConfig("claude", "Claude", claude.url, "CLAUDE_API_KEY", api="anthropic",
                              endpoints=("chat",), api_key=Secret("sk-ant-listing-123"))  # fmt: skip
    listed = await fetch_listing(provider)
    assert sorted(m.provider_model_id for m in listed) == ["claude-haiku-4-5", "claude-sonnet-4-5"]
    seen = claude.stats()["recent"][-1]
    assert seen["query"] == "limit=1000" and seen["headers"]["x-api-key"] == "sk-ant-listing-123"
    assert seen["headers"]["anthropic-version"] == "2023-06-01" and "authorization" not in seen["headers"]
def test_cli_sync_counts_a_changed_provider(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A priority edit changes routing: sync says so, though no offer changed."""
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    with threaded_listing_server() as server:
        config = write_config(tmp_path, serve_both(server))
        assert main(["--config", config, "migrate"]) == 0
        assert main(["--config", config, "sync"]) == 0
        capsys.readouterr()
        Path(config).write_text(Path(config).read_text().replace("priority = 1\n", "priority = 3\n", 1))
        assert main(["--config", config, "sync"]) == 0
        edited = capsys.readouterr().out
        assert main(["--config", config, "sync"]) == 0
        again = capsys.readouterr().out
    assert "Plain: 2 models synced (0 added, 0 updated, 0 deactivated); provider updated: priority 1 -> 3" in edited
    assert "OpenRouter: 2 models synced (0 added, 0 updated, 0 deactivated)\n" in edited
    assert "provider updated" not in again


def test_cli_dry_run_says_a_failed_listing_keeps_its_offers(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    with threaded_listing_server() as server:
        urls = serve_both(server)
        config = write_config(tmp_path, urls)
        assert main(["--config", config, "migrate"]) == 0
        assert main(["--config", config, "sync"]) == 0
        capsys.readouterr()
        server.add("plain", body=b"upstream connect error", status=503)
        assert main(["--config", config, "sync", "--dry-run"]) == 1  # a listing failed
    out = capsys.readouterr().out
    assert "Plain: listing FAILED (" in out and "kept its 2 offers as they were (failed sync 1 of 3" in out
    assert "would be deactivated" not in out


async def test_cached_prompt_prices_come_from_input_cache_read_and_the_config_wins(pool: asyncpg.Pool) -> None:
    listing = openrouter_listing(("openai/gpt-4", "0.00003", "0.00006", 8191), ("x/cheap", "0.000001", "0.000002", 8))
    listing["data"][0]["pricing"]["input_cache_read"] = "0.000015"
    static = """
[[models.offers]]
provider = "openrouter"
provider_model_id = "x/cheap"
pricing_cached_prompt = 0.0000005
"""
    async with listing_server() as server:
        urls = {"openrouter": server.add("openrouter", listing), "plain": server.add("plain", PLAIN)}
        config = config_from_toml(CONFIG.format(**urls).replace("[aliases]", static + "\n[aliases]"), {})
        await sync_catalog(pool, config, fetch_listing)
    loaded = await load_offers(pool)
    by_id = {o.provider_model_id: o for offers in loaded.values() for o in offers if o.provider_slug == "openrouter"}
    assert by_id["openai/gpt-4"].pricing_cached_prompt == 0.000015
    assert by_id["x/cheap"].pricing_cached_prompt == 0.0000005  # the config's, over the listing's (none)
    row = await pool.fetchrow("SELECT pricing_cached_prompt FROM models WHERE provider_model_id = 'openai/gpt-4'")
    assert row["pricing_cached_prompt"] == Decimal("0.000015")  # NUMERIC, as listed
