"""The in-process catalog: canonical model -> offers, read on the request path with no I/O.

It starts from the config's static `[[models]]` offers (so a proxy whose database is down still
serves them) and is replaced wholesale by what the database (or the shared Redis cache) holds,
whenever a refresh succeeds. A failed refresh keeps the last known offers: stale beats failing.

The config is the authority on providers: an offer of a provider the config does not declare (or
declares inactive) is dropped, and an offer's URL and key variable always come from the config, so
neither the database nor a request can point the proxy at another host.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from proxy.canonical import canonical_model_id
from proxy.config import Config, ProviderConfig, StaticOffer
from proxy.types import ALL_ENDPOINTS, ENDPOINTS, Offer


def _static_endpoints(provider: ProviderConfig, item: StaticOffer) -> frozenset[str]:
    return provider.served_endpoints(item.endpoints)


def static_offers(config: Config) -> dict[str, list[Offer]]:
    out: dict[str, list[Offer]] = {}
    for model in config.models:
        for item in model.offers:
            provider = config.provider(item.provider)
            if provider is None:
                continue
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
                    supports_streaming=item.supports_streaming,
                    endpoints=_static_endpoints(provider, item),
                )
            )
    return out


class Catalog:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._providers = {p.slug: p for p in config.providers if p.is_active}
        self._aliases = config.alias_map
        self.source = "config"
        self.loaded_at = time.time()
        self._offers: dict[str, tuple[Offer, ...]] = {}
        # (canonical model, endpoint kind) -> its offers, only where some offer of the model does not
        # serve every kind: when nothing is narrowed (the common case) a lookup costs no extra step
        self._narrowed: dict[tuple[str, str], tuple[Offer, ...]] = {}
        self.replace(static_offers(config), source="config")

    def replace(self, by_model: Mapping[str, Sequence[Offer]], *, source: str) -> None:
        """Install a new snapshot: the given offers, plus static offers they do not already cover."""
        merged: dict[str, dict[tuple[str, str], Offer]] = {}
        for model_id, statics in static_offers(self.config).items():
            merged[model_id] = {o.key: o for o in statics}
        for model_id, offers in by_model.items():
            for offer in offers:
                usable = self._configured(offer)
                if usable is not None:
                    merged.setdefault(model_id, {})[offer.key] = usable
        self._offers = {m: tuple(found.values()) for m, found in merged.items() if found}
        self._narrowed = _narrowed(self._offers)
        self.source = source
        self.loaded_at = time.time()

    def _configured(self, offer: Offer) -> Offer | None:
        provider = self._providers.get(offer.provider_slug)
        if provider is None:
            return None
        return replace(
            offer,
            base_url=provider.base_url,
            api_key_env=provider.api_key_env,
            priority=provider.priority,
            endpoints=offer.endpoints & frozenset(provider.endpoints),
        )

    def resolve(self, model: str) -> str | None:
        """The canonical id a client's model id names (itself, or a provider-style id's), if offered."""
        if model in self._offers:
            return model
        canonical = canonical_model_id(model, self._aliases)
        return canonical if canonical in self._offers else None

    def lookup(self, model: str, endpoint: str | None = None) -> tuple[Offer, ...] | None:
        """The offers of a canonical model (a provider-style id like `openai/gpt-4` finds its canonical
        one), only those serving `endpoint` when given (possibly none); None for an unknown model."""
        found = self._offers.get(model)
        if found is None:
            model = canonical_model_id(model, self._aliases)
            found = self._offers.get(model)
        if found is None or endpoint is None or not self._narrowed:
            return found
        return self._narrowed.get((model, endpoint), found)

    def models(self) -> list[str]:
        return sorted(self._offers)

    def offers(self) -> dict[str, tuple[Offer, ...]]:
        return dict(self._offers)


def _narrowed(offers: Mapping[str, tuple[Offer, ...]]) -> dict[tuple[str, str], tuple[Offer, ...]]:
    out: dict[tuple[str, str], tuple[Offer, ...]] = {}
    for model, found in offers.items():
        if all(o.endpoints == ALL_ENDPOINTS for o in found):
            continue
        for kind in ENDPOINTS:
            out[(model, kind)] = tuple(o for o in found if kind in o.endpoints)
    return out
