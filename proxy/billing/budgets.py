"""Per-key budgets, the pure part: budget periods, spend in whole nano-USD, the over-budget decision.

A `[[keys]]` table may give a key `budget_usd` per `budget_period`: a UTC calendar `day` (from
00:00:00 UTC) or `month` (from the 1st, 00:00:00 UTC). Spend is counted in integer nano-USD
(1e-9 USD), so that every instance can add to one shared counter exactly (Redis `INCRBY`, a Postgres
BIGINT); a request's cost is rounded up to the next nano-USD, never down. A key is over budget once
its spend in the current period reaches its budget; the next request is refused
(`proxy.errors.BudgetExceeded`), until the period ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal

from proxy.errors import BudgetExceeded

NANOS_PER_USD = 10**9
DAY, MONTH = "day", "month"


@dataclass(frozen=True, slots=True)
class Period:
    """One budget period: `kind` (`day` | `month`) from `start` (included) to `end` (excluded), UTC."""

    kind: str
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        """`2026-12-04` for a day, `2026-12` for a month: the counter's name for this period."""
        return self.start.strftime("%Y-%m-%d" if self.kind == DAY else "%Y-%m")


def period_of(kind: str, now: datetime) -> Period:
    """The `day` or `month` period (UTC) that `now` (an aware datetime) falls in."""
    now = now.astimezone(UTC)
    if kind == DAY:
        start = datetime(now.year, now.month, now.day, tzinfo=UTC)
        return Period(kind, start, start + timedelta(days=1))
    if kind == MONTH:
        start = datetime(now.year, now.month, 1, tzinfo=UTC)
        following = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
        return Period(kind, start, following)
    raise ValueError(f"unknown budget period {kind!r}")


def nanos_of(usd: Decimal) -> int:
    """USD as whole nano-USD, rounded up (a cost of 1e-12 USD still counts as 1 nano-USD)."""
    return int((usd * NANOS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def usd_of(nanos: int) -> Decimal:
    """Whole nano-USD as USD, exactly."""
    return Decimal(nanos) / NANOS_PER_USD


def over_budget(spent_nanos: int, budget_usd: Decimal) -> bool:
    """The key has spent its whole budget (or more): its next request is refused."""
    return spent_nanos >= nanos_of(budget_usd)


def budget_exceeded(name: str, budget_usd: Decimal, period: Period, spent_nanos: int) -> BudgetExceeded:
    """The 429 for key `name`: its name (never the key), the budget, the period and when it resets."""
    spent = usd_of(spent_nanos).quantize(Decimal("0.000001"), rounding=ROUND_CEILING).normalize()
    resets = period.end.strftime("%Y-%m-%dT%H:%M:%SZ")
    return BudgetExceeded(
        f"client key {name!r} has spent its budget of {budget_usd} USD for this {period.kind} "
        f"({period.label}, UTC; spent {spent:f} USD); it resets at {resets}"
    )
