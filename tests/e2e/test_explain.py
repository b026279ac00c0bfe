"""`failover explain MODEL [--json]`: the ranked order and why, in a table or the guide's JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from proxy.cli import main
from tests.catalog_helpers import migrated_pool, seed_catalog


@pytest.fixture
def seeded_url(fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    async def seed() -> None:
        async with migrated_pool(fresh_database_url) as pool:
            await seed_catalog(pool)

    asyncio.run(seed())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FAILOVER_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    return fresh_database_url


def test_json_has_the_guides_shape_in_the_specs_order(seeded_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "gpt-4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "gpt-4"
    assert result["providers_available"] == 3
    assert result["recommendation"] == "Primary: openrouter, Fallback: featherless"
    assert [(o["priority"], o["provider"], o["health"]) for o in result["failover_order"]] == [
        (1, "openrouter", "healthy"),
        (2, "featherless", "healthy"),
        (3, "portkey", "degraded"),
    ]
    first = result["failover_order"][0]
    assert first["provider_model_id"] == "openai/gpt-4"
    assert first["response_time_ms"] == 150.0
    assert first["pricing_prompt"] == pytest.approx(0.00003)


def test_the_table_shows_the_order_and_why(seeded_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "gpt-4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "gpt-4 (balanced strategy): 3 offer(s)"
    assert out[1].startswith("  #  provider") and out[1].endswith("prompt $/token  completion $/token")
    assert out[2].split() == ["1", "openrouter", "openai/gpt-4", "healthy", "150", "ms", "0.00003", "0.00006"]
    assert out[3].strip().startswith("why: primary (balanced strategy): healthy, priority 0, 150 ms")
    assert out[7].strip() == "why: after featherless: degraded ranks after healthy"
    assert out[-1] == "Primary: openrouter, Fallback: featherless"


def test_the_configured_strategy_is_used(
    seeded_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "failover.toml").write_text('[proxy]\nstrategy = "price"\n')
    assert main(["explain", "gpt-4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strategy"] == "price"
    assert [o["provider"] for o in result["failover_order"]] == ["featherless", "openrouter", "portkey"]


def test_an_unknown_model_is_a_clear_error(seeded_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "gpt-4o"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (
        "failover explain: unknown model 'gpt-4o': no active offer in the catalog (did you mean gpt-4?)"
    )
    assert "Traceback" not in captured.err


def test_an_empty_catalog_says_to_sync(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FAILOVER_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    assert main(["migrate"]) == 0
    capsys.readouterr()
    assert main(["explain", "gpt-4"]) == 1
    assert "the catalog is empty: run `failover sync`" in capsys.readouterr().err


def test_an_unmigrated_database_says_to_migrate(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FAILOVER_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    assert main(["explain", "gpt-4"]) == 1
    err = capsys.readouterr().err
    assert "the database is not migrated; run `failover migrate`" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("asked", ["GPT-4", "openai/gpt-4"])
def test_ids_the_proxy_accepts_resolve_to_the_canonical_model(
    seeded_url: str, asked: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", asked, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "gpt-4"
    assert result["providers_available"] == 3


def test_the_model_fallback_chain_is_shown(seeded_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "failover.toml").write_text(
        '[[models]]\nmodel_id = "gpt-4"\nfallbacks = ["llama-3-70b-instruct", "solo-model"]\n'
    )
    assert main(["explain", "gpt-4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "model fallbacks: gpt-4 -> llama-3-70b-instruct -> solo-model (when every offer of a model failed)"
    assert main(["explain", "gpt-4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_chain"] == ["gpt-4", "llama-3-70b-instruct", "solo-model"]
    assert main(["explain", "solo-model", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_chain"] == ["solo-model"]


def test_an_offer_of_another_api_says_which_it_speaks(
    seeded_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "failover.toml").write_text(
        '[[providers]]\nslug = "featherless"\nname = "Featherless"\nbase_url = "https://api.featherless.ai/v1"\n'
        'api = "anthropic"\n'
    )
    assert main(["explain", "gpt-4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {o["provider"]: o["api"] for o in result["failover_order"]} == {
        "openrouter": "openai", "featherless": "anthropic", "portkey": "openai"
    }  # fmt: skip
    assert main(["explain", "gpt-4"]) == 0
    out = capsys.readouterr().out.splitlines()
    speaks = [i for i, line in enumerate(out) if line.strip().startswith("speaks:")]
    assert len(speaks) == 1 and "featherless" in out[speaks[0] - 2]
    assert out[speaks[0]].strip() == "speaks: the Anthropic Messages API (/v1/messages natively; chat requests translated)"
