"""Canonical ids: the default rule (after the last `/`, lowercased) and `[aliases]` overrides."""

from __future__ import annotations

import pytest

from proxy.canonical import canonical_model_id, default_canonical_id


@pytest.mark.parametrize(
    ("provider_model_id", "canonical"),
    [
        ("openai/gpt-4", "gpt-4"),
        ("gpt-4", "gpt-4"),
        ("meta-llama/llama-3-70b-instruct", "llama-3-70b-instruct"),
        ("meta-llama/Meta-Llama-3-70B-Instruct", "meta-llama-3-70b-instruct"),
        ("accounts/fireworks/models/llama-v3-70b-instruct", "llama-v3-70b-instruct"),
        ("deepseek/deepseek-r1:free", "deepseek-r1:free"),
        ("  GPT-4o  ", "gpt-4o"),
    ],
)
def test_default_rule(provider_model_id: str, canonical: str) -> None:
    assert default_canonical_id(provider_model_id) == canonical
    assert canonical_model_id(provider_model_id) == canonical


def test_an_alias_wins_over_the_default_rule() -> None:
    aliases = {"meta-llama/Meta-Llama-3-70B-Instruct": "llama-3-70b-instruct"}
    assert canonical_model_id("meta-llama/Meta-Llama-3-70B-Instruct", aliases) == "llama-3-70b-instruct"


def test_alias_keys_match_ignoring_case() -> None:
    aliases = {"Meta-Llama/Meta-Llama-3-70B-Instruct": "llama-3-70b-instruct"}
    assert canonical_model_id("meta-llama/meta-llama-3-70b-instruct", aliases) == "llama-3-70b-instruct"


def test_ids_without_an_alias_keep_the_default_rule() -> None:
    assert canonical_model_id("openai/gpt-4", {"other/model": "x"}) == "gpt-4"
