"""`failover sync`: bring the catalog in line with the config and the providers' listings.

For each configured provider (or those named by `--providers`): upsert its `providers` row, fetch
its listing (unless `listing = "none"`), derive canonical ids (`proxy.canonical`), merge the static
`[[models]]` offers (they win over the listing: their canonical id, and their prices where set),
upsert the offers with prices in USD per token, and mark the provider's active offers that are no
longer wanted inactive. Nothing is ever deleted, so health history stays. Each provider is written
in its own transaction, and a changed provider row (priority, activity, URL...) is reported.

Sync never removes what it could not see. A listing that is down or malformed (`ListingError`), or
that answers with no models while the catalog holds listed offers of the provider, is a *missed*
listing: the provider's offers are kept as they were, its pinned (`[[models]]`) offers that the
catalog lacks are still written, the miss is counted in `providers.listing_failures`, and only when
the provider's listing has missed `listing_failures_to_deactivate` (3) syncs in a row are its listed
offers (every active offer but the pinned ones) deactivated. A listing that answers with models sets
the count back to 0. A full sync (no `--providers`) also deactivates providers that are no longer in
the config. The CLI then announces the change to every running proxy
(`proxy.commands.announce`). `--dry-run` prints the mapping it would write, with each offer's
capabilities (context, max completion tokens, supported parameters, input modalities; `?` =
unknown), and, when there is a catalog to read, the offers and providers a sync would deactivate;
it writes nothing (and creates no embedded database).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from proxy.canonical import canonical_model_id, default_canonical_id
from proxy.commands.announce import announce_catalog_change
from proxy.commands.listing import ListedModel, fetch_listing
from proxy.config import Config, ProviderConfig, StaticOffer, command_config
from proxy.errors import CatalogError, ConfigError, ListingError
from proxy.store import embedded
from proxy.store.database import open_pool
from proxy.store.queries import query

Connection = asyncpg.Connection | PoolConnectionProxy

Fetcher = Callable[[ProviderConfig], Awaitable[list[ListedModel]]]
SYNCED_PROVIDER_KEYS = ("name", "base_url", "api_key_env", "is_active", "priority")


@dataclass(frozen=True, slots=True)
class DesiredOffer:
    """One offer as sync will write it; `source` says where its canonical id came from."""

    provider_model_id: str
    model_id: str
    source: str  # "listing" (the default rule), "alias" or "static"
    pricing_prompt: Decimal | None = None
    pricing_completion: Decimal | None = None
    pricing_request: Decimal | None = None
    context_length: int | None = None
    supports_streaming: bool = True
    pricing_cached_prompt: Decimal | None = None
    endpoints: tuple[str, ...] | None = None  # None: every endpoint its provider serves
    max_completion_tokens: int | None = None
    supported_parameters: tuple[str, ...] | None = None
    input_modalities: tuple[str, ...] | None = None

    def capabilities(self) -> str:
        """What routing will know about this offer, for `sync --dry-run` ("?" = unknown)."""

        def words(values: tuple[str, ...] | None) -> str:
            return "?" if values is None else (",".join(values) or "none")

        def number(value: int | None) -> str:
            return "?" if value is None else str(value)

        return (
            f"context {number(self.context_length)}, max completion {number(self.max_completion_tokens)}, "
            f"parameters {words(self.supported_parameters)}, input {words(self.input_modalities)}"
        )


@dataclass(slots=True)
class ProviderReport:
    """What sync did (or would do) for one provider."""

    slug: str
    name: str
    offers: list[DesiredOffer] = field(default_factory=list)  # a missed listing: the pinned offers only
    added: int = 0
    updated: int = 0
    deactivated: int = 0
    error: str | None = None  # the listing failed: what went wrong (sync exits 1)
    note: str | None = None
    retiring: list[str] = field(default_factory=list)  # dry run: active offers a sync would deactivate
    provider_change: str = ""  # "priority 0 -> 2, ...": what changed in the provider's own row
    missed: bool = False  # the listing failed, or answered with no models while listed offers were active
    misses: int = 0  # missed listings in a row, this one included
    threshold: int = 3  # the provider's `listing_failures_to_deactivate`
    kept: int = 0  # a missed listing: the active offers kept as they were

    def line(self) -> str:
        if self.note:
            return f"{self.name}: {self.note}"
        if self.missed:
            line = f"{self.name}: {self._missed()}"
            if self.offers:
                line += f"; {len(self.offers)} pinned offers synced ({self.added} added, {self.updated} updated)"
        else:
            counts = f"{self.added} added, {self.updated} updated, {self.deactivated} deactivated"
            line = f"{self.name}: {len(self.offers)} models synced ({counts})"
        return line + (f"; provider updated: {self.provider_change}" if self.provider_change else "")

    def _missed(self) -> str:
        said = f"listing FAILED ({self.error})" if self.error else "listing answered with no models"
        if self.misses >= self.threshold:
            run = "failed" if self.error else "answered with no models"
            gone = self.deactivated or len(self.retiring)
            return f"{said}; {run} {self.misses} syncs in a row: {gone} listed offers deactivated"
        which = "failed sync" if self.error else "empty answer"
        count = f"{which} {self.misses} of {self.threshold} before its listed offers are deactivated"
        return f"{said}; kept its {self.kept} offers as they were ({count})" if self.kept else f"{said} ({count})"


def _decimal(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _from_listing(entry: ListedModel, aliases: dict[str, str]) -> DesiredOffer:
    model_id = canonical_model_id(entry.provider_model_id, aliases)
    aliased = model_id != default_canonical_id(entry.provider_model_id)
    return DesiredOffer(
        provider_model_id=entry.provider_model_id,
        model_id=model_id,
        source="alias" if aliased else "listing",
        pricing_prompt=entry.pricing_prompt,
        pricing_completion=entry.pricing_completion,
        pricing_request=entry.pricing_request,
        pricing_cached_prompt=entry.pricing_cached_prompt,
        context_length=entry.context_length,
        endpoints=entry.endpoints,
        max_completion_tokens=entry.max_completion_tokens,
        supported_parameters=entry.supported_parameters,
        input_modalities=entry.input_modalities,
    )


def _from_static(model_id: str, offer: StaticOffer, listed: DesiredOffer | None) -> DesiredOffer:
    """The config's offer; what it leaves unset comes from the provider's listing where it has one."""

    def pick(static: float | None, from_listing: Decimal | None) -> Decimal | None:
        return _decimal(static) if static is not None else from_listing

    def words(static: tuple[str, ...] | None, from_listing: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return tuple(sorted(static)) if static is not None else from_listing

    return DesiredOffer(
        provider_model_id=offer.provider_model_id,
        model_id=model_id,
        source="static",
        pricing_prompt=pick(offer.pricing_prompt, listed.pricing_prompt if listed else None),
        pricing_completion=pick(offer.pricing_completion, listed.pricing_completion if listed else None),
        pricing_request=pick(offer.pricing_request, listed.pricing_request if listed else None),
        pricing_cached_prompt=pick(offer.pricing_cached_prompt, listed.pricing_cached_prompt if listed else None),
        context_length=offer.context_length or (listed.context_length if listed else None),
        supports_streaming=offer.supports_streaming,
        endpoints=offer.endpoints if offer.endpoints is not None else (listed.endpoints if listed else None),
        max_completion_tokens=offer.max_completion_tokens or (listed.max_completion_tokens if listed else None),
        supported_parameters=words(offer.supported_parameters, listed.supported_parameters if listed else None),
        input_modalities=words(offer.input_modalities, listed.input_modalities if listed else None),
    )


def desired_offers(slug: str, listed: Sequence[ListedModel], config: Config) -> list[DesiredOffer]:
    """The offers a provider should have: its listing with canonical ids, then its static offers."""
    aliases = config.alias_map
    wanted = {entry.provider_model_id: _from_listing(entry, aliases) for entry in listed}
    for model in config.models:
        for offer in model.offers:
            if offer.provider == slug:
                previous = wanted.get(offer.provider_model_id)
                wanted[offer.provider_model_id] = _from_static(model.model_id, offer, previous)
    return list(wanted.values())


def _columns(offers: Sequence[DesiredOffer]) -> list[list[object]]:
    return [
        [o.provider_model_id for o in offers],
        [o.model_id for o in offers],
        [o.pricing_prompt for o in offers],
        [o.pricing_completion for o in offers],
        [o.pricing_request for o in offers],
        [o.context_length for o in offers],
        [o.supports_streaming for o in offers],
        [o.max_completion_tokens for o in offers],
        [_joined(o.supported_parameters) for o in offers],
        [_joined(o.input_modalities) for o in offers],
        [None if o.endpoints is None else ",".join(o.endpoints) for o in offers],
        [o.pricing_cached_prompt for o in offers],
    ]


def _joined(values: tuple[str, ...] | None) -> str | None:
    """A list column as the upsert takes it: comma-joined, '' for none, NULL for unknown."""
    return None if values is None else ",".join(v for v in values if "," not in v)


async def _write_provider(pool: asyncpg.Pool, provider: ProviderConfig, report: ProviderReport) -> None:
    p = provider
    async with pool.acquire() as conn, conn.transaction():
        provider_id = await _upsert_provider(conn, p, report)
        if not p.is_active:
            report.note = "inactive in the config: provider marked inactive, its offers left as they are"
            return
        active = {r["provider_model_id"] for r in await conn.fetch(query("active_offer_ids_of_provider"), provider_id)}
        if report.missed and report.error is None:  # an empty answer misses only when there were listed offers
            report.missed = bool(active - pinned_ids(report))
        if report.missed:
            await _keep_what_was_listed(conn, provider_id, p, report, active)
        else:
            await _write_listing(conn, provider_id, report)
        await conn.execute(query("ensure_tracking_rows"), provider_id)


async def _upsert_provider(conn: Connection, p: ProviderConfig, report: ProviderReport) -> int:
    """The provider's row as configured; its id. A changed row is named in `report.provider_change`."""
    before = await conn.fetchrow(query("provider_as_synced"), p.slug)
    written = await conn.fetchval(
        query("upsert_provider"), p.slug, p.name, p.base_url, p.api_key_env, p.is_active, p.priority
    )
    if before is None:
        return int(written)
    if written is not None:
        report.provider_change = ", ".join(provider_changes(before, p))
    return int(before["id"])


def provider_changes(before: asyncpg.Record | Mapping[str, object], provider: ProviderConfig) -> list[str]:
    """What differs between a provider's row as last synced and its config, as `key old -> new`."""
    return [
        f"{key} {before[key]} -> {getattr(provider, key)}"
        for key in SYNCED_PROVIDER_KEYS
        if before[key] != getattr(provider, key)
    ]


def pinned_ids(report: ProviderReport) -> set[str]:
    """The provider model ids the config pins for this provider (a missed listing's `report.offers`)."""
    return {o.provider_model_id for o in report.offers if o.source == "static"}


async def _write_listing(conn: Connection, provider_id: int, report: ProviderReport) -> None:
    """The listing answered: its offers and the pinned ones as wanted, the rest deactivated."""
    changed = await conn.fetch(query("upsert_offers"), provider_id, *_columns(report.offers))
    kept = [o.provider_model_id for o in report.offers]
    gone = await conn.fetch(query("deactivate_missing_offers"), provider_id, kept)
    await conn.execute(query("listing_answered"), provider_id)
    report.added = sum(1 for row in changed if row["inserted"])
    report.updated = len(changed) - report.added
    report.deactivated = len(gone)


async def _keep_what_was_listed(
    conn: Connection, provider_id: int, provider: ProviderConfig, report: ProviderReport, active: set[str]
) -> None:
    """The listing missed: write the pinned offers the catalog lacks (the others stay as they were, the
    listing's prices and limits in them included), count the miss, and deactivate the listed offers only
    once the listing has missed `listing_failures_to_deactivate` syncs in a row."""
    said = report.error or "answered with no models"
    report.misses = await conn.fetchval(query("listing_missed"), provider_id, said)
    report.threshold, report.kept = provider.listing_failures_to_deactivate, len(active)
    missing = [o for o in report.offers if o.provider_model_id not in active]
    if missing:
        changed = await conn.fetch(query("upsert_offers"), provider_id, *_columns(missing))
        report.added = sum(1 for row in changed if row["inserted"])
        report.updated = len(changed) - report.added
    if report.misses >= report.threshold:
        kept = [o.provider_model_id for o in report.offers]
        report.deactivated = len(await conn.fetch(query("deactivate_missing_offers"), provider_id, kept))


async def _listing(provider: ProviderConfig, fetcher: Fetcher) -> list[ListedModel] | ListingError:
    if provider.listing == "none" or not provider.is_active:
        return []
    try:
        return await fetcher(provider)
    except ListingError as exc:
        return exc


def selected_providers(config: Config, only: Sequence[str] | None) -> list[ProviderConfig]:
    """The providers to sync: all, or those named (each must be configured)."""
    if only is None:
        return list(config.providers)
    unknown = [slug for slug in only if config.provider(slug) is None]
    if unknown:
        known = ", ".join(p.slug for p in config.providers) or "none"
        names = ", ".join(unknown)
        raise ConfigError(f"{config.source}: --providers: unknown provider(s) {names} (known: {known})")
    return [p for p in config.providers if p.slug in only]


async def sync_catalog(
    pool: asyncpg.Pool | None,
    config: Config,
    fetcher: Fetcher = fetch_listing,
    *,
    only: Sequence[str] | None = None,
    dry_run: bool = False,
) -> list[ProviderReport]:
    """Sync the selected providers; with `dry_run` (or no pool) compute the offers and write nothing.

    Listings are fetched concurrently; a `ListingError` fails that provider's report only.
    """
    providers = selected_providers(config, only)
    listings = await asyncio.gather(*(_listing(p, fetcher) for p in providers))
    reports = []
    for provider, listed in zip(providers, listings, strict=True):
        report = ProviderReport(provider.slug, provider.name)
        reports.append(report)
        if isinstance(listed, ListingError):
            report.error, report.missed = str(listed), True
        entries = [] if isinstance(listed, ListingError) else listed
        report.offers = desired_offers(provider.slug, entries, config)
        if not entries and provider.listing != "none":
            report.missed = True  # an empty answer: a miss only while the catalog holds listed offers (see the write)
        if pool is not None and dry_run:
            await _foresee_provider(pool, provider, report)
        elif pool is not None:
            await _write_provider(pool, provider, report)
    if pool is not None and only is None:
        reports += await (_foresee_unconfigured if dry_run else _retire_unconfigured)(pool, config)
    return reports


async def _foresee_provider(pool: asyncpg.Pool, provider: ProviderConfig, report: ProviderReport) -> None:
    """What `_write_provider` would deactivate, read without writing."""
    if not provider.is_active:
        report.note = "inactive in the config: provider would be marked inactive, its offers left as they are"
        return
    kept = {o.provider_model_id for o in report.offers}
    active = [r["provider_model_id"] for r in await pool.fetch(query("active_offers_of_provider"), provider.slug)]
    report.missed = report.missed and (report.error is not None or bool(set(active) - kept))
    report.retiring = [model for model in active if model not in kept]
    if report.missed:
        failures = await pool.fetchval(query("listing_failures_of_provider"), provider.slug)
        report.misses, report.kept = (failures or 0) + 1, len(active)
        report.threshold = provider.listing_failures_to_deactivate
        if report.misses < report.threshold:
            report.retiring = []


async def _foresee_unconfigured(pool: asyncpg.Pool, config: Config) -> list[ProviderReport]:
    rows = await pool.fetch(query("unconfigured_active_providers"), [p.slug for p in config.providers])
    note = "no longer in the config: provider would be deactivated"
    return [ProviderReport(row["slug"], row["name"], note=note) for row in rows]


async def _retire_unconfigured(pool: asyncpg.Pool, config: Config) -> list[ProviderReport]:
    rows = await pool.fetch(query("deactivate_unconfigured_providers"), [p.slug for p in config.providers])
    note = "no longer in the config: provider deactivated"
    return [ProviderReport(row["slug"], row["name"], note=note) for row in rows]


def dry_run_lines(report: ProviderReport) -> list[str]:
    """The mapping provider model id -> canonical id that sync would write for one provider, and the
    offers it would deactivate."""
    if report.note:
        return [report.line()]
    if report.missed:
        lines = [report.line()]
    else:
        lines = [f"{report.name} ({report.slug}): {len(report.offers)} models would be synced"]
    for offer in sorted(report.offers, key=lambda o: (o.model_id, o.provider_model_id)):
        mark = "" if offer.source == "listing" else f"  ({offer.source})"
        lines.append(f"  {offer.provider_model_id} -> {offer.model_id}{mark}")
        lines.append(f"      {offer.capabilities()}")
    lines += [f"  {model} would be deactivated (no longer listed or configured)" for model in report.retiring]
    return lines


async def _dry_run(config: Config, only: Sequence[str] | None) -> tuple[list[ProviderReport], str]:
    """The reports of a dry run, reading the catalog (if there is one) for what would be deactivated;
    the second value says why deactivations could not be shown, or ""."""
    if config.database_url is None and not embedded.exists(config.data_dir):
        return await sync_catalog(None, config, only=only, dry_run=True), "no catalog yet: nothing to deactivate"
    try:
        async with open_pool(config) as pool:
            return await sync_catalog(pool, config, only=only, dry_run=True), ""
    except CatalogError as exc:
        reports = await sync_catalog(None, config, only=only, dry_run=True)
        return reports, f"cannot read the catalog, so deactivations are not shown ({exc})"


def run_sync(args: argparse.Namespace) -> int:
    """The CLI: sync, print one line per provider; exit 1 when any provider failed."""
    config = command_config(args, require_file=True)
    only = args.providers

    async def main() -> tuple[list[ProviderReport], str]:
        if args.dry_run:
            return await _dry_run(config, only)
        async with open_pool(config) as pool:
            reports = await sync_catalog(pool, config, only=only)
            return reports, await announce_catalog_change(pool, config)

    reports, note = asyncio.run(main())  # note: what a dry run could not see, or where sync announced
    for report in reports:
        print("\n".join(dry_run_lines(report)) if args.dry_run else report.line())
    if args.dry_run:
        print(f"dry run: nothing was written{'; ' + note if note else ''}")
    else:
        print(note)
    return 1 if any(r.error for r in reports) else 0
