"""`failover check`: the guide's ten database checks, each PASS or FAIL with the reason.

Each check is a small async function over a pool returning `(passed, reason)`; the runner names
them as the guide does, turns a missing table into a FAIL that says to run `failover migrate`,
prints one line per check and the summary `Total: 10 tests, N passed, M failed`, and exits 1 on
any FAIL. An empty catalog fails with the hint `failover sync`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import asyncpg

from proxy.commands.library import get_provider_model_id, get_providers_for_model
from proxy.config import command_config
from proxy.errors import GatewayError
from proxy.failover.ranking import rank_offers
from proxy.store.database import DATABASE_ERRORS, open_pool, require_database
from proxy.store.migrate import pending_migrations
from proxy.store.offers import load_offers
from proxy.store.queries import query
from proxy.store.schema import SCHEMA
from proxy.types import CircuitState, Offer, OfferKey, RuntimeView

MIGRATE = "run `failover migrate`"
SYNC = "run `failover sync`"
SAMPLE_MODELS = ("gpt-4", "gpt-3.5-turbo", "llama-3-70b-instruct")

Outcome = tuple[bool, str]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    passed: bool
    reason: str

    def line(self) -> str:
        return f"[{'PASS' if self.passed else 'FAIL'}] {self.name}: {self.reason}"


async def check_connection(pool: asyncpg.Pool) -> Outcome:
    version = await pool.fetchval("SHOW server_version")
    return True, f"connected to PostgreSQL {version}"


async def check_tables(pool: asyncpg.Pool) -> Outcome:
    missing = [r["table_name"] for r in await pool.fetch(query("missing_tables"), list(SCHEMA))]
    if missing:
        return False, f"missing: {', '.join(missing)}; {MIGRATE}"
    async with pool.acquire() as conn:
        pending = await pending_migrations(conn)
    if pending:
        return False, f"migrations not applied yet: {', '.join(pending)}; {MIGRATE}"
    return True, f"{', '.join(SCHEMA)} present, migrations up to date"


async def check_columns(pool: asyncpg.Pool) -> Outcome:
    actual: dict[str, set[str]] = {}
    for row in await pool.fetch(query("table_columns"), list(SCHEMA)):
        actual.setdefault(row["table_name"], set()).add(row["column_name"])
    missing = [
        f"{table}.{column}" for table, columns in SCHEMA.items() for column in columns
        if column not in actual.get(table, set())
    ]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        return False, f"missing columns: {shown}; {MIGRATE}"
    return True, f"all {sum(len(c) for c in SCHEMA.values())} documented columns present"


async def check_providers(pool: asyncpg.Pool, env: Mapping[str, str] = os.environ) -> Outcome:
    """Active providers exist, and each that names a key variable has it set in `env` (else every
    request to it would go out without a key)."""
    counts = await pool.fetchrow(query("provider_counts"))
    assert counts is not None
    if counts["total"] == 0:
        return False, f"no providers in the catalog; {SYNC}"
    if counts["active"] == 0:
        return False, f"none of the {counts['total']} providers is active; check the config, then {SYNC}"
    rows = await pool.fetch(query("provider_key_variables"))
    unset = [f"{r['slug']} ({r['api_key_env']})" for r in rows if not env.get(r["api_key_env"], "").strip()]
    if unset:
        return False, (
            f"key variable not set for {', '.join(unset)}: requests would go out without a key; set it, "
            f"or remove `api_key_env` from a provider that needs no key, then {SYNC}"
        )
    return True, f"{counts['active']} active providers ({counts['total']} in all)"


async def check_models(pool: asyncpg.Pool) -> Outcome:
    rows = await pool.fetch(query("offer_counts_by_provider"))
    active = sum(row["active"] for row in rows)
    if active == 0:
        return False, f"no active offers in the catalog; {SYNC}"
    per_provider = ", ".join(f"{row['slug']} {row['active']}" for row in rows)
    return True, f"{active} active offers ({per_provider})"


def _sample(catalog: dict[str, list[Offer]], limit: int = 5) -> list[str]:
    """The guide's usual models when present, then those with the most offers."""
    known = [m for m in SAMPLE_MODELS if m in catalog]
    rest = sorted((m for m in catalog if m not in known), key=lambda m: (-len(catalog[m]), m))
    return (known + rest)[:limit]


async def check_query_basic(pool: asyncpg.Pool) -> Outcome:
    catalog = await load_offers(pool)
    if not catalog:
        return False, f"no model has an active offer; {SYNC}"
    found = []
    for model in _sample(catalog):
        slugs = [m["provider_slug"] for m in await get_providers_for_model(pool, model)]
        if sorted(slugs) != sorted(o.provider_slug for o in catalog[model]):
            return False, f"{model}: the failover query and the catalog disagree ({slugs})"
        found.append(f"{model} on {len(slugs)} ({', '.join(slugs)})")
    return True, f"{len(catalog)} models; " + "; ".join(found)


def _multi(catalog: dict[str, list[Offer]]) -> list[str]:
    return sorted(m for m, offers in catalog.items() if len(offers) > 1)


async def check_query_sorting(pool: asyncpg.Pool) -> Outcome:
    catalog = await load_offers(pool)
    if not catalog:
        return False, f"no offers to sort; {SYNC}"
    models = _multi(catalog)[:20]
    if not models:
        return True, "no model has two offers yet: nothing to sort"
    for model in models:
        listed = await get_providers_for_model(pool, model)
        ranked = rank_offers(catalog[model]).offers
        tiers = [o.effective_health.tier for o in ranked]
        if tiers != sorted(tiers):
            return False, f"{model}: a less healthy offer is ranked before a healthier one"
        if [m["offer_id"] for m in listed] != [o.offer_id for o in ranked]:
            return False, f"{model}: the failover query's order differs from the proxy's ranking"
    return True, f"{len(models)} models with failover ranked by health, then priority, latency, price"


async def check_aliases(pool: asyncpg.Pool) -> Outcome:
    if not await load_offers(pool):
        return False, f"no offers to resolve; {SYNC}"
    examples = await pool.fetch(query("alias_examples"))
    if not examples:
        return True, "no aliases: every provider uses the canonical ids"
    for row in examples:
        resolved = await get_provider_model_id(pool, row["model_id"], row["provider_slug"])
        if resolved is None:
            return False, f"'{row['model_id']}' on {row['provider_slug']} does not resolve"
    shown = (f"'{r['model_id']}' on {r['provider_slug']} -> '{r['provider_model_id']}'" for r in examples)
    return True, "; ".join(shown)


async def check_tracking(pool: asyncpg.Pool) -> Outcome:
    row = await pool.fetchrow(query("tracking_summary"))
    assert row is not None
    if row["offers"] == 0:
        return False, f"no offers to track; {SYNC}"
    if row["tracked"] < row["offers"]:
        untracked = f"{row['offers'] - row['tracked']} of {row['offers']} active offers"
        return False, f"{untracked} have no model_health_tracking row; {SYNC}"
    calls = row["successes"] + row["errors"]
    reason = f"{row['tracked']} offers tracked, {calls} calls recorded"
    if calls == 0:
        return True, reason + " (none yet: run `failover health --once`, or send traffic through the proxy)"
    statuses = ", ".join(f"{row[s]} {s}" for s in ("healthy", "degraded", "unhealthy", "unknown") if row[s])
    reason += f" ({_percent(row['successes'], calls)} ok); {statuses}"
    if row["cooling"]:
        reason += f"; {row['cooling']} cooling down"
    if row["probed_ago_s"] is not None:
        reason += f"; last probe {row['probed_ago_s']:.0f} s ago"
    return True, reason


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%"


async def _tracked(pool: asyncpg.Pool) -> dict[OfferKey, asyncpg.Record]:
    rows = await pool.fetch(query("tracked_offers"))
    return {(r["provider_slug"], r["provider_model_id"]): r for r in rows}


def _evidence(offers: tuple[Offer, ...], tracked: dict[OfferKey, asyncpg.Record]) -> str:
    """What tracking recorded of these offers, for the reason: success rates over real calls."""
    parts = []
    for offer in offers:
        row = tracked.get(offer.key)
        if row is not None and row["calls"] and row["success_rate"] is not None:
            parts.append(f"{offer.provider_slug} {100 * row['success_rate']:.1f}% ok over {row['calls']} calls")
    return f"; tracked: {', '.join(parts)}" if parts else ""


async def check_simulation(pool: asyncpg.Pool) -> Outcome:
    """The ranking the proxy would use now (health and cooldowns as tracked), then its primary failing."""
    catalog = await load_offers(pool)
    if not catalog:
        return False, f"no offers to fail over between; {SYNC}"
    models = _multi(catalog)
    if not models:
        return True, "no model has a second offer yet: nothing to fail over to"
    model = next((m for m in SAMPLE_MODELS if m in models), models[0])
    tracked, now = await _tracked(pool), time.time()
    views = {k: RuntimeView(cooldown_until=r["cooldown_until"]) for k, r in tracked.items() if r["cooldown_until"]}
    ranking = rank_offers(catalog[model], runtime=views, now=now)
    if len(ranking.offers) < 2:
        cooling = ", ".join(o.provider_slug for o in ranking.cooling)
        return False, f"{model}: no fallback usable right now ({cooling} cooling down, as tracked)"
    primary = ranking.offers[0]
    broken = {**views, primary.key: RuntimeView(circuit=CircuitState.OPEN)}
    after = rank_offers(catalog[model], runtime=broken, now=now).offers
    if not after or after[0] == primary or after[0] != ranking.offers[1]:
        return False, f"{model}: with {primary.provider_slug} failing, the next offer is not the fallback"
    fallback = after[0]
    return True, (
        f"{model}: {primary.provider_slug} fails -> {fallback.provider_slug} "
        f"('{fallback.provider_model_id}', {fallback.effective_health})"
        + _evidence((primary, fallback), tracked)
        + (f"; cooling down now: {', '.join(o.provider_slug for o in ranking.cooling)}" if ranking.cooling else "")
    )


CHECKS: tuple[tuple[str, Callable[[asyncpg.Pool], Awaitable[Outcome]]], ...] = (
    ("Database Connection", check_connection),
    ("Schema Tables", check_tables),
    ("Schema Columns", check_columns),
    ("Providers Data", check_providers),
    ("Models Data", check_models),
    ("Failover Query - Basic", check_query_basic),
    ("Failover Query - Sorting", check_query_sorting),
    ("Model Aliases", check_aliases),
    ("Health Tracking", check_tracking),
    ("Failover Simulation", check_simulation),
)


async def run_checks(pool: asyncpg.Pool | None, connect_error: str = "") -> list[CheckResult]:
    """Every check in order; without a pool all FAIL, the first with `connect_error`."""
    results: list[CheckResult] = []
    for name, check in CHECKS:
        if pool is None:
            reason = connect_error if not results else "skipped: no database connection"
            results.append(CheckResult(name, False, reason))
            continue
        try:
            passed, reason = await check(pool)
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError) as exc:
            passed, reason = False, f"{exc}; {MIGRATE}"
        except (*DATABASE_ERRORS, GatewayError) as exc:
            passed, reason = False, f"{type(exc).__name__}: {exc}"
        results.append(CheckResult(name, passed, reason))
    return results


def summary(results: list[CheckResult]) -> str:
    passed = sum(r.passed for r in results)
    return f"Total: {len(results)} tests, {passed} passed, {len(results) - passed} failed"


def run_check(args: argparse.Namespace) -> int:
    """The CLI: print each check and the summary; exit 1 on any FAIL."""
    config = command_config(args)
    require_database(config, "check")

    async def main() -> list[CheckResult]:
        try:
            async with open_pool(config) as pool:
                return await run_checks(pool)
        except GatewayError as exc:
            return await run_checks(None, str(exc))

    results = asyncio.run(main())
    for result in results:
        print(result.line())
    print(summary(results))
    return 0 if all(r.passed for r in results) else 1
