"""One instance's view of each budgeted key's spend in its current period, in process memory.

The request path only reads and adds to this view (`check` when a request arrives, `add` when it
ends): no Redis, no Postgres. The view of a slot (a key and one of its periods) is

    spent = shared + pushing + pending

- `shared`: the total of every instance, as last read from the shared counter (`proxy.billing.spend_sync`);
- `pending`: this instance's costs since its last push; `pushing`: those of the push under way.

The sync moves `pending` to `pushing` (`take_pending`), adds it to the shared counter, and hands the
counter's new totals back (`pushed`); a failed push puts it back into `pending` (`push_failed`). A
total read from the counter only ever raises `shared` (spend within a period never goes down), so a
read that raced a push cannot lower the view. Only keys with a budget are counted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal

from proxy.billing.budgets import Period, budget_exceeded, nanos_of, over_budget, period_of
from proxy.config import ClientKey

Slot = tuple[str, Period]  # (key name, budget period)


class SpendLedger:
    """Spend per budgeted key and period (`budgets()`: key name -> `ClientKey` with a budget, read
    anew at each call, so a reload's budgets apply at once)."""

    def __init__(self, budgets: Callable[[], Mapping[str, ClientKey]]) -> None:
        self.budgets = budgets
        self.shared: dict[Slot, int] = {}
        self.pending: Counter[Slot] = Counter()
        self.pushing: Counter[Slot] = Counter()
        self._periods: dict[str, tuple[float, float, Period]] = {}  # kind -> (start, end: epoch seconds; period)

    def period(self, kind: str, now: float | None = None) -> Period:
        """The current `day` or `month` period (computed once per period)."""
        now = time.time() if now is None else now
        cached = self._periods.get(kind)
        if cached is not None and cached[0] <= now < cached[1]:
            return cached[2]
        period = period_of(kind, datetime.fromtimestamp(now, UTC))
        self._periods[kind] = (period.start.timestamp(), period.end.timestamp(), period)
        return period

    def spent(self, slot: Slot) -> int:
        """Nano-USD spent in `slot`, as far as this instance knows."""
        return self.shared.get(slot, 0) + self.pushing[slot] + self.pending[slot]

    def check(self, key_name: str, now: float | None = None) -> None:
        """Raise `BudgetExceeded` when the key has a budget and has spent it in the current period."""
        key = self.budgets().get(key_name)
        if key is None or key.budget_usd is None:
            return
        period = self.period(key.budget_period, now)
        spent = self.spent((key_name, period))
        if over_budget(spent, key.budget_usd):
            raise budget_exceeded(key_name, key.budget_usd, period, spent)

    def add(self, key_name: str, cost_usd: Decimal | None, now: float | None = None) -> None:
        """Count a finished request's cost (`proxy.failover.accounting.request_cost`) against its key's
        current period; None (unpriced) and 0 add nothing, nor does a key without a budget."""
        if not cost_usd or cost_usd < 0:
            return
        key = self.budgets().get(key_name)
        if key is None or key.budget_usd is None:
            return
        self.pending[(key_name, self.period(key.budget_period, now))] += nanos_of(cost_usd)

    def current_slots(self, now: float | None = None) -> list[Slot]:
        """The slot of each budgeted key in its current period: what the sync reads."""
        return [(name, self.period(key.budget_period, now)) for name, key in self.budgets().items()]

    def take_pending(self) -> dict[Slot, int]:
        """This instance's unshared spend, moved to `pushing` for the push under way."""
        taken = dict(self.pending)
        self.pending.clear()
        self.pushing.update(taken)
        return taken

    def pushed(self, taken: Mapping[Slot, int], totals: Mapping[Slot, int]) -> None:
        """The push of `taken` is in the shared counter, whose totals are now at least `totals`."""
        self.pushing.subtract(taken)
        self.pushing = +self.pushing  # drop the slots at 0
        self.seen(totals)

    def push_failed(self, taken: Mapping[Slot, int]) -> None:
        """The push of `taken` did not happen: it waits for the next one."""
        self.pushing.subtract(taken)
        self.pushing = +self.pushing
        self.pending.update(taken)

    def seen(self, totals: Mapping[Slot, int]) -> None:
        """Totals read from the shared counter; slots of past periods are forgotten."""
        for slot, total in totals.items():
            if total > self.shared.get(slot, 0):
                self.shared[slot] = total
        self._forget_past(time.time())

    def _forget_past(self, now: float) -> None:
        past: Iterable[Slot] = [s for s in self.shared if s[1].end.timestamp() <= now]
        for slot in past:
            del self.shared[slot]
