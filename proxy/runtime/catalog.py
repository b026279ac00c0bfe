"""The in-process catalog: canonical model -> offers, read on the request path with no I/O.

The catalog in Postgres is the one source of truth for routing: what it says about a provider's
`priority` and activity, the pinned (`[[models]]`) offers and the aliases (as the canonical ids sync
wrote) is what this instance ranks by, exactly what `failover explain` shows. `failover sync`
writes them from the config and announces the change, so every instance follows within a second.

The config's own `[[models]]` offers (with the config's priorities) are always part of the routing
catalog, whatever the database holds: an offer the database has (by provider and provider model id)
is routed as the database says, one it lacks (pinned after the last sync, or a database that was never
synced or is unreachable) as the config says, unless the catalog marks its provider inactive. A failed
refresh keeps the last known offers: stale beats failing.

The config stays the authority on hosts and keys: an offer of a provider the config does not
declare is dropped, and an offer's URL, key variable and API (`api`) always come from the config,
so neither the database nor a request can point the proxy at another host.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from proxy.canonical import resolve_model_id
from proxy.config import Config, ProviderConfig, StaticOffer
from proxy.types import ALL_ENDPOINTS, ENDPOINTS, Offer, OfferKey

Policy = tuple[str | None, bool | None, str | None]  # data_collection, zdr, quantization


def _words(values: tuple[str, ...] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


CONFIG_SOURCE = "config"


def static_offers(config: Config) -> dict[str, list[Offer]]:
    """The config's `[[models]]` offers of its active providers, with the config's priorities."""
    out: dict[str, list[Offer]] = {}
    for model in config.models:
        for item in model.offers:
            provider = config.provider(item.provider)
            if provider is None or not provider.is_active:
                continue
            data_collection, zdr, quantization = _policy(provider, item)
            out.setdefault(model.model_id, []).append(
                Offer(
                    model_id=model.model_id,
                    provider_slug=provider.slug,
                    provider_model_id=item.provider_model_id,
                    base_url=provider.base_url,
                    api_key_env=provider.api_key_env,
                    priority=provider.priority,
                    pricing_prompt=item.pricing_prompt,
                    pricing_completion=item.pricing_completion,
                    pricing_request=item.pricing_request,
                    pricing_cached_prompt=item.pricing_cached_prompt,
                    supports_streaming=item.supports_streaming,
                    context_length=item.context_length,
                    max_completion_tokens=item.max_completion_tokens,
                    supported_parameters=_words(item.supported_parameters),
                    input_modalities=_words(item.input_modalities),
                    data_collection=data_collection,
                    zdr=zdr,
                    quantization=quantization,
                    endpoints=provider.served_endpoints(item.endpoints),
                    api=provider.api,
                )
            )
    return out


def _policy(provider: ProviderConfig, offer: StaticOffer | None) -> Policy:
    """The data policies the config declares: the offer's own, else its provider's."""

    if offer is None:
        return provider.data_collection, provider.zdr, provider.quantization
    return (
        offer.data_collection if offer.data_collection is not None else provider.data_collection,
        offer.zdr if offer.zdr is not None else provider.zdr,
        offer.quantization if offer.quantization is not None else provider.quantization,
    )


def static_policies(config: Config) -> dict[OfferKey, StaticOffer]:
    return {(o.provider, o.provider_model_id): o for m in config.models for o in m.offers}


class Catalog:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.source = CONFIG_SOURCE
        self.loaded_at = time.time()
        self._snapshot: dict[str, list[Offer]] = {}
        self.retired: frozenset[str] = frozenset()  # providers the catalog marks inactive
        self._offers: dict[str, tuple[Offer, ...]] = {}
        self._by_provider_id: dict[str, str] = {}
        # (canonical model, endpoint kind) -> its offers, only where some offer of the model does not
        # serve every kind: when nothing is narrowed (the common case) a lookup costs no extra step
        self._narrowed: dict[tuple[str, str], tuple[Offer, ...]] = {}
        self.replace({}, source=CONFIG_SOURCE)

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded config (hosts, keys, static offers, aliases) to the current snapshot."""
        self.config = config
        self.replace(self._snapshot, source=self.source, as_of=self.loaded_at)

    def replace(
        self,
        by_model: Mapping[str, Sequence[Offer]],
        *,
        source: str,
        retired: frozenset[str] | None = None,
        as_of: float | None = None,
    ) -> None:
        """Install a new snapshot: the catalog's offers as they are, with the config's pinned offers it
        lacks (`with_pinned`); none given, or the source is the config: the config's static offers.
        `retired` names the providers the catalog marks inactive (None: as before); `as_of` is when
        the offers were current (a snapshot read back; None: now)."""
        snapshot = {m: list(o) for m, o in by_model.items() if o}
        if source == CONFIG_SOURCE or not snapshot:
            snapshot, source = {}, CONFIG_SOURCE
        if retired is not None:
            self.retired = retired
        routed = with_pinned(snapshot, static_offers(self.config), self.retired)
        declared = {p.slug: p for p in self.config.providers}
        statics = static_policies(self.config)
        offers: dict[str, tuple[Offer, ...]] = {}
        for model_id, listed in routed.items():
            usable = tuple(
                _hosted(o, declared[o.provider_slug], statics.get(o.key)) for o in listed if o.provider_slug in declared
            )
            if usable:
                offers[model_id] = usable
        self._snapshot, self._offers, self.source = snapshot, offers, source
        self._by_provider_id = {o.provider_model_id.lower(): m for m, found in offers.items() for o in found}
        self._narrowed = _narrowed(offers)
        self.loaded_at = time.time() if as_of is None else as_of

    def held_keys(self) -> frozenset[OfferKey]:
        """The offers the catalog itself holds (by provider and provider model id)."""
        return frozenset(o.key for found in self._snapshot.values() for o in found)

    def held(self) -> tuple[dict[str, list[Offer]], frozenset[str]]:
        """What the catalog itself said, as installed (no config offers added, no hosts applied), and
        the providers it retired: what a snapshot keeps. Nothing while the source is the config."""
        return {m: list(o) for m, o in self._snapshot.items()}, self.retired

    def resolve(self, model: str) -> str | None:
        """The canonical id a client's model id names, if offered (`proxy.canonical.resolve_model_id`)."""
        if model in self._offers:
            return model
        return resolve_model_id(model, self._offers, self._by_provider_id, self.config.alias_map)

    def lookup(self, model: str, endpoint: str | None = None) -> tuple[Offer, ...] | None:
        """The offers of a canonical model, only those serving `endpoint` (a `proxy.types.ENDPOINTS`
        kind) when given, possibly none; None for an unknown model. Any id `resolve` maps finds its
        model: a provider-style id (`openai/gpt-4`) the canonical model the catalog files that offer
        under (aliases as synced), `GPT-4` its canonical `gpt-4`."""
        found = self._offers.get(model)
        if found is None:
            canonical = resolve_model_id(model, self._offers, self._by_provider_id, self.config.alias_map)
            if canonical is None:
                return None
            model, found = canonical, self._offers[canonical]
        if endpoint is None or not self._narrowed:
            return found
        return self._narrowed.get((model, endpoint), found)

    def models(self) -> list[str]:
        return sorted(self._offers)

    def offers(self) -> dict[str, tuple[Offer, ...]]:
        return dict(self._offers)


def with_pinned(
    catalog: Mapping[str, Sequence[Offer]], pinned: Mapping[str, Sequence[Offer]], retired: frozenset[str]
) -> dict[str, list[Offer]]:
    """The catalog's offers, plus each pinned offer the catalog does not hold (by provider and provider
    model id, under whichever canonical model) of a provider it does not mark inactive."""
    held = {o.key for offers in catalog.values() for o in offers}
    out = {model: list(offers) for model, offers in catalog.items()}
    for model, offers in pinned.items():
        for offer in offers:
            if offer.key not in held and offer.provider_slug not in retired:
                out.setdefault(model, []).append(offer)
    return out


def _hosted(offer: Offer, provider: ProviderConfig, static: StaticOffer | None) -> Offer:
    """The offer with the configured provider's URL and key variable (never the database's), the
    data policies the config declares for it (`data_collection`, `zdr`, `quantization`), what it
    serves (the provider's `endpoints` narrowed by the offer's own) and the API it speaks (the
    provider's `api`: like its URL, the config's word, never the database's)."""
    data_collection, zdr, quantization = _policy(provider, static)
    return replace(
        offer,
        base_url=provider.base_url,
        api_key_env=provider.api_key_env,
        data_collection=data_collection,
        zdr=zdr,
        quantization=quantization,
        endpoints=offer.endpoints & frozenset(provider.endpoints),
        api=provider.api,
    )


def _narrowed(offers: Mapping[str, tuple[Offer, ...]]) -> dict[tuple[str, str], tuple[Offer, ...]]:
    """(canonical model, endpoint kind) -> the model's offers serving it, for the models where some
    offer does not serve every kind (none: every lookup is the model's offers as they are)."""
    out: dict[tuple[str, str], tuple[Offer, ...]] = {}
    for model, found in offers.items():
        if all(o.endpoints == ALL_ENDPOINTS for o in found):
            continue
        for kind in ENDPOINTS:
            out[(model, kind)] = tuple(o for o in found if kind in o.endpoints)
    return out
