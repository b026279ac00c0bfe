"""Reloading the config without a restart (`kill -HUP`), and what a reload cannot change.

`failover serve` re-reads `$FAILOVER_CONFIG` on SIGHUP in every worker process (with `--workers N`
the supervisor passes the signal on) and applies it to the running gateway: the routing settings
(`strategy`, `max_attempts`, timeouts, limits, circuit and cooldown settings, refresh intervals),
the providers' URLs, key variables and `[[models]]` offers, and the aliases. Requests in flight
finish with the settings they started with; nothing is dropped, and cooldowns, circuits and the
catalog loaded from Postgres stay. What is bound when the process starts cannot change live: the
listening address, the upstream connect timeout (the connection pool's), the shutdown grace
period and the idle keep-alive of client connections; changing them is logged as needing a restart
and the running value is kept. The worker count and the environment (`DATABASE_URL`, `REDIS_URL`,
keys) are the process's own: a restart too.
"""

from __future__ import annotations

from dataclasses import replace

from proxy.config import Config

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


def reload_summary(running: Config, applied: Config, restart: list[str]) -> str:
    """One log line: what changed and was applied, and what needs a restart."""
    changes = [
        f"{field} ({getattr(running.proxy, field)} -> {getattr(applied.proxy, field)})"
        for field in type(running.proxy).__dataclass_fields__
        if getattr(running.proxy, field) != getattr(applied.proxy, field)
    ]
    if running.providers != applied.providers:
        changes.append("providers")
    if running.models != applied.models:
        changes.append("[[models]] offers")
    if running.aliases != applied.aliases:
        changes.append("aliases")
    line = f"config reloaded from {applied.source}: applied {', '.join(changes) or 'no change'}"
    if restart:
        line += f"; needs a restart to take effect: {', '.join(restart)}"
    return line
