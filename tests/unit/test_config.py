"""Config: the TOML file of SPEC section 3 into one frozen dataclass, with errors that name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.config import Secret, load_config
from proxy.errors import ConfigError
from proxy.runtime.catalog import Catalog
from proxy.types import Strategy

GOOD = """
[proxy]
port = 9000
strategy = "price"
max_attempts = 4

[[providers]]
slug = "openrouter"
name = "OpenRouter"
base_url = "https://openrouter.ai/api/v1/"
api_key_env = "OPENROUTER_API_KEY"
listing = "openrouter"

[[providers]]
slug = "featherless"
name = "Featherless"
base_url = "https://api.featherless.ai/v1"
api_key_env = "FEATHERLESS_API_KEY"
priority = 1

[[models]]
model_id = "gpt-4"
offers = [
  { provider = "openrouter", provider_model_id = "openai/gpt-4", pricing_prompt = 0.00003, pricing_completion = 0.00006 },
  { provider = "featherless", provider_model_id = "gpt-4" },
]

[aliases]
"meta-llama/Meta-Llama-3-70B-Instruct" = "llama-3-70b-instruct"
"""

ENV = {"OPENROUTER_API_KEY": "sk-or-secret-123", "FAILOVER_ADMIN_TOKEN": "adm-tok", "FAILOVER_API_KEYS": "a, b"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "failover.toml"
    path.write_text(text)
    return path


def test_reads_the_spec_shape(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), ENV)
    assert config.proxy.port == 9000
    assert config.proxy.strategy is Strategy.PRICE
    assert config.proxy.deadline_s == 120.0
    assert [p.slug for p in config.providers] == ["openrouter", "featherless"]
    assert config.providers[0].base_url == "https://openrouter.ai/api/v1"
    assert config.providers[0].api_key.reveal() == "sk-or-secret-123"
    assert not config.providers[1].api_key
    assert config.models[0].offers[0].pricing_prompt == pytest.approx(0.00003)
    assert config.alias_map == {"meta-llama/Meta-Llama-3-70B-Instruct": "llama-3-70b-instruct"}
    assert [k.reveal() for k in config.api_keys] == ["a", "b"]


def test_is_frozen_and_masks_secrets(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), ENV)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.proxy.port = 1  # type: ignore[misc]
    text = repr(config) + str(config) + f"{config.providers[0]}"
    for secret in ENV.values():
        for part in secret.split(","):
            if len(part.strip()) > 2:
                assert part.strip() not in text
    assert repr(Secret("x")) == "Secret('**********')"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (GOOD + "\n[bogus]\nx = 1\n", "bogus: unknown key"),
        (GOOD.replace("max_attempts = 4", "max_attemps = 4"), "proxy.max_attemps: unknown key"),
        (GOOD.replace("port = 9000", 'port = "nine"'), "proxy.port: expected an integer"),
        (GOOD.replace('strategy = "price"', 'strategy = "cheap"'), "proxy.strategy: expected one of"),
        (GOOD.replace("max_attempts = 4", "max_attempts = 0"), "proxy.max_attempts: must be greater than 0"),
        (GOOD.replace('slug = "featherless"', 'slug = "openrouter"'), "duplicate provider slug"),
        (GOOD.replace('{ provider = "featherless"', '{ provider = "nowhere"'), "names undeclared provider"),
        (GOOD.replace('name = "Featherless"\n', ""), "providers[1]: missing required key(s): name"),
        (GOOD.replace('listing = "openrouter"', 'listing = "xml"'), "providers[0].listing"),
        (GOOD.replace("https://api.featherless", "ftp://api.featherless"), "providers[1].base_url"),
        ("[proxy\nport=1", "not valid TOML"),
        (
            GOOD.replace("max_attempts = 4", "max_attempts = 4\nhedge_budget = 1.5"),
            "proxy.hedge_budget: must be a share",
        ),
        (GOOD.replace("max_attempts = 4", "max_attempts = 4\nhedge = 1"), "proxy.hedge: expected true or false"),
        (GOOD + "\n[usage]\nflush_s = 0\n", "usage.flush_s: must be greater than 0"),
        (GOOD + "\n[usage]\nretention_days = 1.5\n", "usage.retention_days: expected an integer"),
        (GOOD + "\n[usage]\nflush = 1\n", "usage.flush: unknown key"),
        (
            GOOD.replace('\nmodel_id = "gpt-4"', '\nmodel_id = "gpt-4"\nhedge_budget = 0'),
            "models[0].hedge_budget: must be",
        ),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FAILOVER_CONFIG"):
        load_config(tmp_path / "nope.toml", {})


def test_cli_exits_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("max_attempts = 4", "max_attempts = true"))
    assert main(["--config", str(path), "explain", "gpt-4"]) == 2
    err = capsys.readouterr().err
    assert "proxy.max_attempts: expected an integer" in err
    assert "Traceback" not in err


CAPABLE = """
[[providers]]
slug = "together"
name = "Together"
base_url = "https://api.together.xyz/v1"
listing = "together"
data_collection = "deny"

[[providers]]
slug = "deepinfra"
name = "DeepInfra"
base_url = "https://api.deepinfra.com/v1/openai"
listing = "openrouter"
pricing_unit = "1m"
zdr = true
quantization = "fp8"

[[models]]
model_id = "llama-3.3-70b"
fallbacks = ["llama-3.1-70b", "llama-3.3-70b", "qwen-72b", "llama-3.1-70b"]

[[models.offers]]
provider = "deepinfra"
provider_model_id = "meta-llama/Llama-3.3-70B-Instruct"
context_length = 131072
max_completion_tokens = 8192
supported_parameters = ["tools", "tool_choice", "response_format"]
input_modalities = ["text"]
quantization = "bf16"
"""


def test_capabilities_policies_listing_formats_and_fallbacks(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CAPABLE), {})
    together, deepinfra = config.providers
    assert (together.listing, together.pricing_unit, together.data_collection) == ("together", None, "deny")
    assert (deepinfra.pricing_unit, deepinfra.zdr, deepinfra.quantization) == ("1m", True, "fp8")
    [model] = config.models
    assert model.fallbacks == ("llama-3.1-70b", "qwen-72b")  # itself and duplicates dropped, order kept
    assert config.model_fallbacks == {"llama-3.3-70b": ("llama-3.1-70b", "qwen-72b")}
    [offer] = model.offers
    assert offer.supported_parameters == ("tools", "tool_choice", "response_format")
    assert (offer.context_length, offer.max_completion_tokens, offer.input_modalities) == (131072, 8192, ("text",))
    assert offer.quantization == "bf16"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (('pricing_unit = "1m"', 'pricing_unit = "1g"'), "providers[1].pricing_unit: expected one of token | 1k | 1m"),
        (('data_collection = "deny"', 'data_collection = "never"'), "providers[0].data_collection: expected one of"),
        (('quantization = "fp8"', 'quantization = "fp7"'), "providers[1].quantization: expected one of"),
        (("zdr = true", 'zdr = "yes"'), "providers[1].zdr: expected true or false"),
        (('input_modalities = ["text"]', 'input_modalities = "text"'), "offers[0].input_modalities: expected an array"),
        (('supported_parameters = ["tools"', 'supported_parameters = [1, "tools"'), "offers[0].supported_parameters"),
        (("max_completion_tokens = 8192", "max_completion_tokens = 0"), "offers[0].max_completion_tokens: must be"),
        (('fallbacks = ["llama-3.1-70b"', 'fallbacks = [""'), "models[0].fallbacks: expected an array of non-empty"),
        (('listing = "together"', 'listing = "fireworks"'), "providers[0].listing: expected one of"),
    ],
)
def test_bad_capability_keys_name_the_key(tmp_path: Path, change: tuple[str, str], fragment: str) -> None:
    text = CAPABLE.replace(*change)
    assert text != CAPABLE
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]").replace("|", r"\|")):
        load_config(write(tmp_path, text), {})


ANTHROPIC = GOOD.replace(
    '[[models]]',
    '[[providers]]\nslug = "anthropic"\nname = "Anthropic"\nbase_url = "https://api.anthropic.com/v1"\n'
    'api_key_env = "ANTHROPIC_API_KEY"\napi = "anthropic"\n\n[[models]]',
    1,
)


def test_a_provider_says_which_api_it_speaks_and_an_anthropic_one_serves_chat(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ANTHROPIC.replace(
        '{ provider = "featherless", provider_model_id = "gpt-4" },',
        '{ provider = "featherless", provider_model_id = "gpt-4" },\n  { provider = "anthropic", provider_model_id = "gpt-4" },',
    )), ENV)  # fmt: skip
    speakers = {p.slug: (p.api, p.endpoints) for p in config.providers}
    assert speakers["openrouter"][0] == "openai"
    assert speakers["anthropic"] == ("anthropic", ("chat",))
    offers = {o.provider_slug: o for o in Catalog(config).lookup("gpt-4") or ()}
    assert offers["anthropic"].api == "anthropic" and offers["openrouter"].api == "openai"
    assert Catalog(config).lookup("gpt-4", "embeddings") is not None
    assert "anthropic" not in {o.provider_slug for o in Catalog(config).lookup("gpt-4", "embeddings") or ()}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (('api = "anthropic"', 'api = "gemini"'), "providers[2].api: expected one of openai | anthropic"),
        (('api = "anthropic"', 'api = "anthropic"\nendpoints = ["chat", "embeddings"]'),
         'providers[2].endpoints: a provider with api = "anthropic" serves only ["chat"]'),
    ],
)
def test_a_bad_api_names_the_key(tmp_path: Path, change: tuple[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ANTHROPIC.replace(*change)), {})
    assert fragment in str(info.value)
