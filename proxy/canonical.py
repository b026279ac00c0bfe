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

What a client may ask for (`resolve_model_id`, the one rule of the proxy, `failover explain`, the
admin views and the library API): a canonical id, an offer's provider model id (`openai/gpt-4`),
an `[aliases]` key, or a canonical id in another case (`GPT-4`), each ignoring case. A provider-style
id that no offer is listed as (`anthropic/gpt-4`) names nothing: a made-up prefix is not served by
whichever offer shares the part after the slash.
"""

from __future__ import annotations

from collections.abc import Container, Mapping


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


def resolve_model_id(
    asked: str, canonical_ids: Container[str], by_provider_id: Mapping[str, str], aliases: Mapping[str, str]
) -> str | None:
    """The canonical model a client's id names, or None.

    `canonical_ids` holds the catalog's canonical ids; `by_provider_id` maps each offer's provider
    model id, lowercased, to its canonical id; `aliases` is the config's `[aliases]`."""
    if asked in canonical_ids:
        return asked
    key = asked.strip().lower()
    found = by_provider_id.get(key)
    if found is not None:
        return found
    for alias_key, canonical in aliases.items():
        if alias_key.strip().lower() == key:
            return canonical if canonical in canonical_ids else None
    if "/" in key:
        return None
    return key if key in canonical_ids else None


def resolution_candidates(asked: str, aliases: Mapping[str, str]) -> tuple[str, ...]:
    """The canonical ids `resolve_model_id` could answer for `asked` without an offer's provider model
    id: itself, its alias's target, its lowercase form (what a catalog read must look up)."""
    key = asked.strip().lower()
    targets = [canonical for alias_key, canonical in aliases.items() if alias_key.strip().lower() == key]
    return tuple(dict.fromkeys((asked, *targets, key)))
