"""Client key names and per-key budgets, the pure parts: `name:key` entries, `[[keys]]` validation,
budget periods (UTC days and months, their rollover), spend in nano-USD, the over-budget decision and
the in-process spend view that the request path reads."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from proxy.billing.budgets import (
    budget_exceeded,
    nanos_of,
    over_budget,
    period_of,
    usd_of,
)
from proxy.billing.spend import Slot, SpendLedger
from proxy.billing.spend_sync import SpendSync
from proxy.client_keys import bare_key_name, split_entries, split_entry
from proxy.config import ClientKey, Config, Secret, config_from_mapping
from proxy.errors import BudgetExceeded, ConfigError
from proxy.http.reload import reload_summary


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# --- names ---------------------------------------------------------------------------------------


def test_an_entry_names_its_key_before_the_first_colon() -> None:
    assert split_entry(" alice : sk-abc ") == ("alice", "sk-abc")
    assert split_entry("team.a_1:sk:with:colons") == ("team.a_1", "sk:with:colons")
    assert split_entries("alice:sk-1, ,bob:sk-2,") == [("alice", "sk-1"), ("bob", "sk-2")]


def test_a_bare_key_gets_a_name_that_is_not_the_key() -> None:
    key = "sk-live-0123456789abcdef"
    name, value = split_entry(key)
    assert value == key and name == bare_key_name(key)
    assert name == "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]
    assert key not in name and len(name) == 12
    assert bare_key_name(key) == bare_key_name(key) != bare_key_name(key + "x")  # stable, and per key
    # a colon after something that is not a name (or with nothing after it) is part of a bare key
    assert split_entry("not a name:xyz") == (bare_key_name("not a name:xyz"), "not a name:xyz")
    assert split_entry("alice:") == (bare_key_name("alice:"), "alice:")


# --- [[keys]] ------------------------------------------------------------------------------------


def config(keys: list[dict[str, Any]], **env: str) -> Config:
    return config_from_mapping({"keys": keys}, "f.toml", {"KEY_A": "sk-a-123", "KEY_B": "sk-b-456", **env})


def test_keys_tables_and_the_environment_make_one_list_of_named_keys() -> None:
    got = config(
        [
            {"name": "team-a", "key_env": "KEY_A", "budget_usd": 12.5, "budget_period": "day"},
            {"name": "team-b", "key_env": "KEY_B", "budget_usd": "0.000001"},
        ],
        FAILOVER_API_KEYS="ops:sk-ops-1,sk-bare-2",
    )
    names = [k.name for k in got.client_keys]
    assert names == ["ops", bare_key_name("sk-bare-2"), "team-a", "team-b"]
    assert [k.reveal() for k in got.api_keys] == ["sk-ops-1", "sk-bare-2", "sk-a-123", "sk-b-456"]
    team_a, team_b = got.client_keys[2:]
    assert (team_a.budget_usd, team_a.budget_period, team_a.key_env) == (Decimal("12.5"), "day", "KEY_A")
    assert (team_b.budget_usd, team_b.budget_period) == (Decimal("0.000001"), "month")  # month by default
    text = repr(got) + str(got.client_keys)
    assert not any(secret in text for secret in ("sk-a-123", "sk-b-456", "sk-ops-1", "sk-bare-2"))


@pytest.mark.parametrize(
    ("keys", "env", "message"),
    [
        ({"name": "a", "key_env": "UNSET"}, {}, "keys[0].key_env: UNSET is not set or empty: key 'a' would open"),
        ({"name": "a b", "key_env": "KEY_A"}, {}, "keys[0].name: 'a b' is not a key name"),
        ({"key_env": "KEY_A"}, {}, "keys[0].name: missing, or not a non-empty string"),
        ({"name": "a", "key_env": "KEY_A", "budget": 1}, {}, "keys[0].budget: unknown key (known: name, key_env"),
        ({"name": "a", "key_env": "KEY_A", "budget_usd": 0}, {}, "keys[0].budget_usd: key 'a': must be greater than 0"),
        ({"name": "a", "key_env": "KEY_A", "budget_usd": -1.5}, {}, "must be greater than 0, got -1.5"),
        ({"name": "a", "key_env": "KEY_A", "budget_usd": "ten"}, {}, "keys[0].budget_usd: key 'a': not a number"),
        ({"name": "a", "key_env": "KEY_A", "budget_usd": "nan"}, {}, "must be greater than 0, got 'nan'"),
        ({"name": "a", "key_env": "KEY_A", "budget_usd": True}, {}, "expected a number of USD, got bool"),
        (
            {"name": "a", "key_env": "KEY_A", "budget_usd": 1, "budget_period": "week"},
            {},
            "keys[0].budget_period: expected one of day | month, got 'week'",
        ),
        ({"name": "a", "key_env": "KEY_A", "budget_period": "day"}, {}, "has a budget_period but no budget_usd"),
        ({"name": "a", "key_env": "SPACED"}, {"SPACED": "sk a"}, "has a space or control character"),
        ({"name": "ops", "key_env": "KEY_A"}, {"FAILOVER_API_KEYS": "ops:x"}, "duplicate key name 'ops'"),
        ({"name": "a", "key_env": "KEY_A"}, {"FAILOVER_API_KEYS": "sk-a-123"}, "is the same key as"),
    ],
)
def test_a_bad_keys_table_is_refused_with_a_message_naming_it(
    keys: dict[str, Any], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config([keys], **env)
    assert message in str(caught.value) and str(caught.value).startswith("f.toml: ")
    assert "sk-a-123" not in str(caught.value)


def test_duplicate_names_between_tables_name_both_places() -> None:
    with pytest.raises(ConfigError, match=r"f.toml: keys\[1\]: duplicate key name 'a' \(also in keys\[0\]\)"):
        config([{"name": "a", "key_env": "KEY_A"}, {"name": "a", "key_env": "KEY_B"}])
    with pytest.raises(ConfigError, match="expected an array of tables"):
        config_from_mapping({"keys": {"name": "a"}}, "f.toml", {})


def test_a_reload_names_what_changed_in_the_keys_never_a_key() -> None:
    running = config([{"name": "a", "key_env": "KEY_A"}])
    reread = config([{"name": "a", "key_env": "KEY_A", "budget_usd": 5, "budget_period": "day"},
                     {"name": "b", "key_env": "KEY_B"}])  # fmt: skip
    line = reload_summary(running, reread, [])
    assert "key b added" in line and "key a budget (none -> 5 USD per day)" in line
    assert "sk-" not in line


# --- periods, nano-USD, decisions ----------------------------------------------------------------


def test_a_day_runs_from_midnight_utc_and_rolls_over_at_the_next() -> None:
    period = period_of("day", utc(2026, 12, 31, 23, 59, 59))
    assert (period.start, period.end, period.label) == (utc(2026, 12, 31), utc(2027, 1, 1), "2026-12-31")
    assert period_of("day", utc(2027, 1, 1)).label == "2027-01-01"
    # a time given in another zone counts in UTC: 01:00 in UTC+2 is still the day before in UTC
    from datetime import timedelta, timezone

    assert period_of("day", datetime(2027, 1, 1, 1, tzinfo=timezone(timedelta(hours=2)))).label == "2026-12-31"


@pytest.mark.parametrize(
    ("now", "start", "end", "label"),
    [
        (utc(2026, 1, 31, 12), utc(2026, 1, 1), utc(2026, 2, 1), "2026-01"),
        (utc(2028, 2, 29, 23, 59), utc(2028, 2, 1), utc(2028, 3, 1), "2028-02"),  # a leap year's February
        (utc(2026, 12, 15), utc(2026, 12, 1), utc(2027, 1, 1), "2026-12"),  # December rolls into the next year
        (utc(2027, 1, 1), utc(2027, 1, 1), utc(2027, 2, 1), "2027-01"),  # the first instant is in the new month
    ],
)
def test_a_month_runs_from_the_first_utc_to_the_next(now: datetime, start: datetime, end: datetime, label: str) -> None:
    period = period_of("month", now)
    assert (period.start, period.end, period.label) == (start, end, label)


def test_spend_is_whole_nano_usd_rounded_up_and_a_spent_budget_refuses() -> None:
    assert nanos_of(Decimal("0.000000150")) == 150
    assert nanos_of(Decimal("1E-15")) == 1  # never rounded down to free
    assert usd_of(nanos_of(Decimal("12.345678901"))) == Decimal("12.345678901")
    budget = Decimal("0.01")
    assert not over_budget(9_999_999, budget)
    assert over_budget(10_000_000, budget) and over_budget(10_000_001, budget)


def test_the_budget_error_names_the_key_the_budget_the_period_and_the_reset() -> None:
    error = budget_exceeded("team-a", Decimal("5"), period_of("day", utc(2026, 12, 4, 10)), 5_000_000_001)
    assert isinstance(error, BudgetExceeded) and (error.status, error.code) == (429, "budget_exceeded")
    assert error.message == (
        "client key 'team-a' has spent its budget of 5 USD for this day (2026-12-04, UTC; spent 5.000001 USD); "
        "it resets at 2026-12-05T00:00:00Z"
    )


# --- the in-process view -------------------------------------------------------------------------


def ledger(budget: str = "0.000010", period: str = "day") -> SpendLedger:
    key = ClientKey("a", Secret("sk-a"), "KEY_A", Decimal(budget), period)
    return SpendLedger(lambda: {"a": key})


NOW = time.time()  # the view forgets the totals of periods that have ended: count in the current one


def test_the_view_adds_its_own_costs_at_once_and_refuses_once_spent() -> None:
    spend = ledger()
    spend.check("a", NOW)
    spend.add("a", Decimal("0.000004"), NOW)
    spend.add("a", None, NOW)  # unpriced: adds nothing
    spend.add("other", Decimal("1"), NOW)  # no budget: not counted
    spend.check("a", NOW)
    spend.add("a", Decimal("0.000006"), NOW)
    with pytest.raises(BudgetExceeded, match=r"'a' has spent its budget of 0\.000010 USD for this day"):
        spend.check("a", NOW)
    spend.check("other", NOW)
    tomorrow = spend.period("day", NOW).end.timestamp()
    spend.check("a", tomorrow)  # a new day: a new budget


def test_the_shared_totals_count_other_instances_and_a_failed_push_is_kept() -> None:
    spend = ledger()
    spend.add("a", Decimal("0.000003"), NOW)
    (slot,) = spend.current_slots(NOW)
    taken = spend.take_pending()
    assert taken == {slot: 3000} and spend.spent(slot) == 3000  # in flight, still counted
    spend.add("a", Decimal("0.000001"), NOW)
    spend.push_failed(taken)
    assert spend.spent(slot) == 4000 and spend.take_pending() == {slot: 4000}
    spend.pushed({slot: 4000}, {slot: 9000})  # the counter: ours and 5000 from other instances
    assert spend.spent(slot) == 9000
    spend.seen({slot: 7000})  # an older read never lowers the view
    assert spend.spent(slot) == 9000
    spend.seen({slot: 10_000})
    with pytest.raises(BudgetExceeded):
        spend.check("a", NOW)


class FlakyStore:
    """A shared store that is away until `up`, adding what it is given to counters of its own."""

    def __init__(self) -> None:
        self.up = False
        self.counters: Counter[Slot] = Counter()

    async def exchange(self, taken: Mapping[Slot, int], slots: list[Slot]) -> dict[Slot, int]:
        if not self.up:
            raise ConnectionError("store away")
        self.counters.update(taken)
        return {slot: self.counters[slot] for slot in (*taken, *slots)}

    async def aclose(self) -> None:
        pass


async def test_spend_waits_while_the_store_is_away_and_is_shared_once_when_it_is_back() -> None:
    spend, store = ledger(), FlakyStore()
    sync = SpendSync(spend, store, lambda: 1.0)
    spend.add("a", Decimal("0.000002"))
    await sync.exchange()
    (slot,) = spend.current_slots()
    assert sync.failing and spend.spent(slot) == 2000 and store.counters[slot] == 0  # still counted here
    spend.add("a", Decimal("0.000001"))
    store.up = True
    store.counters[slot] = 5000  # other instances' spend meanwhile
    await sync.exchange()
    assert not sync.failing and store.counters[slot] == 8000 and spend.spent(slot) == 8000
    await sync.exchange()  # nothing new: nothing added twice
    assert store.counters[slot] == 8000 and spend.spent(slot) == 8000
