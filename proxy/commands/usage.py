"""`failover usage [--since T] [--until T] [--group-by key,day] [--key NAME] [--json]`: what requests cost.

Reads the `usage_records` table (migration 0009) the proxies write: requests, served requests, cost
in USD (exact decimal text) and tokens over [since, until) (ISO 8601; no offset: UTC; default the last
24 hours), grouped by up to two of `key`, `model`, `provider`, `day` (default `key`). The table form
ends with the totals; `--json` prints what `GET /admin/usage` answers. Records reach the table within
`[usage] flush_s` of their request. A bad time or group is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from proxy.billing.usage_db import check_groups, parse_time, spend, spend_json, totals
from proxy.config import command_config
from proxy.store.database import open_pool, require_database

DEFAULT_RANGE = timedelta(hours=24)
NUMBERS = ("requests", "served", "cost_usd", "prompt_tokens", "cached_prompt_tokens", "completion_tokens",
           "reasoning_tokens")  # fmt: skip


def render_table(groups: list[str], rows: list[dict[str, Any]], total: dict[str, Any]) -> str:
    header = [*groups, *NUMBERS]
    lines = [[str(row.get(name, "")) for name in header] for row in rows]
    lines.append(["total", *([""] * (len(groups) - 1)), *(str(total[name]) for name in NUMBERS)][: len(header)])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def run_usage(args: argparse.Namespace) -> int:
    config = command_config(args)
    require_database(config, "usage")
    try:
        until = parse_time(args.until, datetime.now(UTC), "--until")
        since = parse_time(args.since, until - DEFAULT_RANGE, "--since")
        groups = [g.strip() for g in args.group_by.split(",") if g.strip()]
        check_groups(groups)
    except ValueError as exc:
        print(f"failover usage: {exc}", file=sys.stderr)
        return 2

    async def main() -> list[dict[str, Any]]:
        async with open_pool(config) as pool:
            return await spend(pool, since, until, groups, args.key)

    rows = asyncio.run(main())
    total = totals(rows)
    if args.json:
        body = {"since": since.isoformat(), "until": until.isoformat(), "group_by": groups,
                "data": spend_json(rows), "totals": total}  # fmt: skip
        print(json.dumps(body, indent=2))
    else:
        print(f"usage from {since.isoformat()} until {until.isoformat()}")
        print(render_table(groups or ["all"], spend_json(rows), total))
    return 0
