"""Canonical model ids: the name a client asks for, derived from the ids providers list.

The default rule: **the canonical id is the provider's model id after its last `/`, lowercased**
(`openai/gpt-4` -> `gpt-4`, `meta-llama/llama-3-70b-instruct` -> `llama-3-70b-instruct`,
`accounts/fireworks/models/llama-v3-70b-instruct` -> `llama-v3-70b-instruct`). Nothing else is
stripped: a variant suffix such as `:free` or `:online` stays, because it names a different offer
(other limits, other behaviour), so `deepseek/deepseek-r1:free` -> `deepseek-r1:free`.

Where the rule is wrong, `[aliases]` in the config wins: it maps a provider model id (matched
ignoring case) to the canonical id to use, e.g.
`"meta-llama/Meta-Llama-3-70B-Instruct" = "llama-3-70b-instruct"`.
Static `[[models]]` offers name their canonical id themselves and need neither.
"""

from __future__ import annotations

from collections.abc import Mapping


def default_canonical_id(provider_model_id: str) -> str:
    """The default rule alone: the part after the last `/`, lowercased."""
    return provider_model_id.strip().rstrip("/").rsplit("/", 1)[-1].lower()


def canonical_model_id(provider_model_id: str, aliases: Mapping[str, str] | None = None) -> str:
    """The canonical id of a listed provider model id: its alias if it has one, else the default rule.

    `aliases` is the config's `[aliases]` table; its keys match ignoring case and surrounding space.
    """
    key = provider_model_id.strip().lower()
    for alias_key, canonical in (aliases or {}).items():
        if alias_key.strip().lower() == key:
            return canonical
    return default_canonical_id(provider_model_id)
