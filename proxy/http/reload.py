"""Reloading the config without a restart (`kill -HUP`), and what a reload cannot change.

`failover serve` re-reads `$FAILOVER_CONFIG` on SIGHUP in every worker process (with `--workers N`
the supervisor passes the signal on) and applies it to the running gateway. Requests in flight
finish with the settings they started with; nothing is dropped, and cooldowns, circuits and the
catalog loaded from Postgres stay. The log line (`reload_summary`) says exactly what happened to
each change:

- applied: the routing settings (`strategy`, `max_attempts`, timeouts, limits, circuit and cooldown
  settings, refresh intervals, hedging), the client keys of `[[keys]]` (added, removed, their
  `key_env` and budgets; a key's spend so far in its period is kept), a provider's URL, key
  variable, endpoints and data policies, providers added or removed, model fallbacks, and the pinned
  `[[models]]` offers the catalog does not hold (they route as the config says);
- waits for `failover sync`: what routing reads from the catalog while the proxy serves one (its
  source is not the config): a provider's `priority`, `is_active` and `name`, and changes to pinned
  offers the catalog holds; the canonical ids of listed offers under changed `[aliases]` (requests'
  own ids are mapped with the new aliases at once). With no catalog (the config is the source) all of
  these apply at once. A provider's `listing`, `pricing_unit` and `listing_failures_to_deactivate` are
  read only by `failover sync`, its `probe` only by the health worker;
- needs a restart: what is bound when the process starts: the listening address, the upstream
  connect timeout (the connection pool's), the shutdown grace period and the idle keep-alive of
  client connections; the running value is kept. The worker count and the environment
  (`DATABASE_URL`, `REDIS_URL`, keys) are the process's own: a restart too.
"""

from __future__ import annotations

from dataclasses import replace

from proxy.config import ClientKey, Config, StaticOffer
from proxy.types import OfferKey

# [proxy] keys bound at start-up: a reload keeps the running value and says a restart is needed.
RESTART_ONLY = ("host", "port", "connect_timeout_s", "shutdown_grace_s", "keep_alive_s")


def restart_only_changes(running: Config, reread: Config) -> list[str]:
    """The `[proxy]` keys whose new value needs a restart, as `key (old -> new)`."""
    changed = []
    for key in RESTART_ONLY:
        old, new = getattr(running.proxy, key), getattr(reread.proxy, key)
        if old != new:
            changed.append(f"{key} ({old} -> {new})")
    return changed


def live_config(running: Config, reread: Config) -> Config:
    """The re-read config with the restart-only values (and the process's environment) kept as running."""
    kept = {key: getattr(running.proxy, key) for key in RESTART_ONLY}
    return replace(
        reread,
        proxy=replace(reread.proxy, **kept),
        database_url=running.database_url,
        redis_url=running.redis_url,
        redis_prefix=running.redis_prefix,
    )


def reload_summary(
    running: Config, applied: Config, restart: list[str], held: frozenset[OfferKey] | None = None
) -> str:
    """One log line: what changed and was applied, what waits for `failover sync`, what other commands
    read, and what needs a restart. `held` names the offers the catalog the proxy serves holds (None:
    it serves the config's offers alone, so nothing waits for `sync`)."""
    now = _setting_changes(running, applied) + _key_changes(running, applied)
    later: list[str] = []
    elsewhere: list[str] = []
    groups = {APPLIED: now, SYNC: later, OTHER: elsewhere}
    for change, when in (*_provider_changes(running, applied), *_pinned_changes(running, applied, held)):
        groups[APPLIED if when == SYNC and held is None else when].append(change)
    if running.aliases != applied.aliases:
        if held is None:
            now.append("aliases")
        else:
            now.append("aliases (for the ids requests send)")
            later.append("aliases (the canonical ids of listed offers)")
    line = f"config reloaded from {applied.source}: applied {', '.join(now) or 'no change'}"
    if later:
        line += f"; waits for `failover sync`: {', '.join(later)}"
    if elsewhere:
        line += f"; read by other commands: {', '.join(elsewhere)}"
    if restart:
        line += f"; needs a restart to take effect: {', '.join(restart)}"
    return line


APPLIED, SYNC, OTHER = "applied", "sync", "other"
LIVE_PROVIDER_KEYS = ("base_url", "api_key_env", "endpoints", "data_collection", "zdr", "quantization")
CATALOG_PROVIDER_KEYS = ("priority", "is_active", "name")  # routing reads them from the catalog
OTHER_PROVIDER_KEYS = {
    "listing": "failover sync",
    "pricing_unit": "failover sync",
    "listing_failures_to_deactivate": "failover sync",
    "probe": "failover health",
}
MODEL_KEYS = ("fallbacks", "hedge", "hedge_budget")
Change = tuple[str, str]  # (what changed, when it takes effect: APPLIED, SYNC or OTHER)


def _setting_changes(running: Config, applied: Config) -> list[str]:
    return [
        f"{field} ({getattr(running.proxy, field)} -> {getattr(applied.proxy, field)})"
        for field in type(running.proxy).__dataclass_fields__
        if getattr(running.proxy, field) != getattr(applied.proxy, field)
    ]


def _key_changes(running: Config, applied: Config) -> list[str]:
    """Client keys added or removed, and each key whose variable or budget changed (by name only)."""
    before = {k.name: k for k in running.client_keys}
    after = {k.name: k for k in applied.client_keys}
    changes = [f"key {name} added" for name in after if name not in before]
    changes += [f"key {name} removed" for name in before if name not in after]
    for name in sorted(after.keys() & before.keys()):
        old, new = before[name], after[name]
        if (old.budget_usd, old.budget_period) != (new.budget_usd, new.budget_period):
            changes.append(f"key {name} budget ({_budget(old)} -> {_budget(new)})")
        if old.key_env != new.key_env or old.key != new.key:
            changes.append(f"key {name} key")
    return changes


def _budget(key: ClientKey) -> str:
    return "none" if key.budget_usd is None else f"{key.budget_usd} USD per {key.budget_period}"


def _provider_changes(running: Config, applied: Config) -> list[Change]:
    before = {p.slug: p for p in running.providers}
    after = {p.slug: p for p in applied.providers}
    changes = [(f"provider {slug} added", APPLIED) for slug in after if slug not in before]
    changes += [(f"provider {slug} removed", APPLIED) for slug in before if slug not in after]
    for slug in after.keys() & before.keys():
        old, new = before[slug], after[slug]
        for key in (*LIVE_PROVIDER_KEYS, *CATALOG_PROVIDER_KEYS, *OTHER_PROVIDER_KEYS):
            was, now = getattr(old, key), getattr(new, key)
            if was == now:
                continue
            if key in OTHER_PROVIDER_KEYS:
                changes.append((f"provider {slug} {key} ({OTHER_PROVIDER_KEYS[key]})", OTHER))
            else:
                when = SYNC if key in CATALOG_PROVIDER_KEYS else APPLIED
                changes.append((f"provider {slug} {key} ({was} -> {now})", when))
    return sorted(changes)


def _pinned_changes(running: Config, applied: Config, held: frozenset[OfferKey] | None) -> list[Change]:
    """Each pinned offer added, removed or changed (it waits for `sync` when the catalog holds it), and
    each model whose fallbacks or hedging changed."""
    before, after = _pinned(running), _pinned(applied)
    changes: list[Change] = []
    for offer in sorted(before.keys() | after.keys()):
        if before.get(offer) == after.get(offer):
            continue
        what = "added" if offer not in before else "removed" if offer not in after else "changed"
        when = SYNC if held is not None and offer in held else APPLIED
        changes.append((f"pinned offer {offer[0]}:{offer[1]} {what}", when))
    models_before, models_after = {m.model_id: m for m in running.models}, {m.model_id: m for m in applied.models}
    for model in sorted(models_before.keys() & models_after.keys()):
        for field in MODEL_KEYS:
            if getattr(models_before[model], field) != getattr(models_after[model], field):
                changes.append((f"model {model} {field}", APPLIED))
    return changes


def _pinned(config: Config) -> dict[OfferKey, tuple[str, StaticOffer]]:
    return {(o.provider, o.provider_model_id): (m.model_id, o) for m in config.models for o in m.offers}
