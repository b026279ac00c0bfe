"""`failover explain MODEL [--json]`: the ranked failover order of one model, and why.

The human form is a table (rank, provider, provider model id, health, latency, prices) with the
reason under each row, what a proxy learned of the offer's time to first output when one has flushed
it (`model_health_tracking.first_output`), the API an offer's provider speaks when it is not OpenAI's
(`api` in the config), and the model fallback chain (`[[models]] fallbacks`) when there is one;
`--json` prints `explain_failover_for_model`'s shape, the guide's, plus `model_chain` and each
offer's `api`.
The model is found the way the proxy finds it (`proxy.canonical.resolve_model_id`: `GPT-4`, an
offer's own id such as `openai/gpt-4`, or the config's `[aliases]`). A model with no active offer is an error: a
message (with close matches) on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import sys
from typing import Any

from proxy.commands.library import explain_failover_for_model, resolve_model
from proxy.config import command_config
from proxy.failover.reasons import usd
from proxy.provider_api import ANTHROPIC, OPENAI
from proxy.store.database import open_pool, require_database
from proxy.store.offers import list_models

COLUMNS = ("#", "provider", "provider model", "health", "latency", "prompt $/token", "completion $/token")
API_LINES = {ANTHROPIC: "the Anthropic Messages API (/v1/messages natively; chat requests translated)"}


def _cell(value: object, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}{unit}" if unit else usd(value)
    return f"{value}{unit}"


def _row(entry: dict[str, Any]) -> tuple[str, ...]:
    return (
        str(entry["priority"]),
        entry["provider"],
        entry["provider_model_id"],
        entry["health"],
        _cell(entry["response_time_ms"], " ms"),
        _cell(entry["pricing_prompt"]),
        _cell(entry["pricing_completion"]),
    )


def first_output_lines(learned: dict[str, Any] | None) -> list[str]:
    """What a proxy learned of the offer's time to first output, one line per kind with samples."""
    lines = []
    for kind, label in (("stream", "streams"), ("non_stream", "whole answers")):
        known = (learned or {}).get(kind) or {}
        if known.get("usual_ms") is None:
            continue
        usual, hedge, deadline = known["usual_ms"], known["hedge_delay_ms"], known["deadline_s"]
        lines.append(
            f"     first output ({label}): usually {usual:g} ms, hedge after {hedge:g} ms,"
            f" learned deadline {deadline:g} s ({known['samples']} samples)"
        )
    return lines


def render_table(result: dict[str, Any]) -> str:
    """The human form of an explain result."""
    rows = [COLUMNS, *(_row(entry) for entry in result["failover_order"])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [f"{result['model']} ({result['strategy']} strategy): {result['providers_available']} offer(s)"]
    for i, row in enumerate(rows):
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append(("  " + "  ".join(cells)).rstrip())
        if i:
            entry = result["failover_order"][i - 1]
            lines.append(f"     why: {entry['reason']}")
            lines.extend(first_output_lines(entry.get("first_output")))
            if entry.get("api", OPENAI) != OPENAI:
                lines.append(f"     speaks: {API_LINES.get(entry['api'], entry['api'])}")
    lines.append(result["recommendation"])
    if len(result.get("model_chain", ())) > 1:
        lines.append(f"model fallbacks: {' -> '.join(result['model_chain'])} (when every offer of a model failed)")
    return "\n".join(lines)


def unknown_model_message(model: str, known: list[str]) -> str:
    message = f"failover explain: unknown model {model!r}: no active offer in the catalog"
    close = difflib.get_close_matches(model, known, n=3)
    if close:
        return f"{message} (did you mean {', '.join(close)}?)"
    if not known:
        return f"{message} (the catalog is empty: run `failover sync`)"
    return message


def run_explain(args: argparse.Namespace) -> int:
    """The CLI: print the order (table or JSON); exit 1 for an unknown model."""
    config = command_config(args)
    require_database(config, "explain")

    async def main() -> tuple[dict[str, Any], list[str]]:
        async with open_pool(config) as pool:
            strategy = config.proxy.strategy
            model = await resolve_model(pool, args.model, config.alias_map)  # as `Catalog.lookup` does
            result = await explain_failover_for_model(pool, model, strategy=strategy)
            result["model_chain"] = [result["model"], *config.model_fallbacks.get(result["model"], ())]
            for entry in result["failover_order"]:  # the config says which API a provider speaks
                provider = config.provider(entry["provider"])
                entry["api"] = provider.api if provider is not None else OPENAI
            known = await list_models(pool) if not result["providers_available"] else []
            return result, known

    result, known = asyncio.run(main())
    if not result["providers_available"]:
        print(unknown_model_message(args.model, known), file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else render_table(result))
    return 0
