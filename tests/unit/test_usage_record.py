"""The usage record (pure): built from a request's record, its spool lines, its generation shape; the spool file."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import orjson

from proxy.billing.spool import Spool
from proxy.billing.usage_record import COLUMNS, from_spool_line, generation_json, spool_line
from proxy.errors import UpstreamStatus
from proxy.failover.accounting import request_cost, usage_record_of
from proxy.failover.record import RequestRecord
from proxy.store.schema import USAGE_COLUMNS
from proxy.types import Offer
from proxy.upstream.usage import Usage

PRICED = Offer(
    "gpt-4", "good", "good/gpt-4", "http://127.0.0.1:1", "", pricing_prompt=0.00003, pricing_completion=0.00006,
    pricing_cached_prompt=0.000015, pricing_request=0.0001,
)  # fmt: skip
FAILING = Offer("gpt-4", "bad", "bad/gpt-4", "http://127.0.0.1:2", "", pricing_prompt=0.5, pricing_completion=0.5)
UNPRICED = Offer("gpt-4", "free", "free/gpt-4", "http://127.0.0.1:3", "")


def served_record(offer: Offer = PRICED, *, failed_first: bool = False) -> RequestRecord:
    record = RequestRecord("/v1/chat/completions", "req-1")
    record.key_name = "team-a"
    record.routing("openai/gpt-4", "gpt-4", stream=False)
    if failed_first:
        record.attempt_failed(FAILING, UpstreamStatus(503, retryable=True, body=b"down"), 0.012, final=False)
    record.attempt_served(offer, 0.2, 0.15)
    record.answered(200, "ok", Usage(prompt_tokens=1000, completion_tokens=200, cached_prompt_tokens=400,
                                     reasoning_tokens=50))  # fmt: skip
    record.ended_because("stop")
    return record


def test_columns_are_the_documented_table() -> None:
    assert COLUMNS == USAGE_COLUMNS


def test_a_served_request_is_priced_at_the_offer_that_served_and_failed_attempts_cost_nothing() -> None:
    record = served_record(failed_first=True)
    cost = request_cost(record)
    row = usage_record_of(record, 0.25, cost)
    # 600 uncached x 0.00003 + 400 cached x 0.000015 + 200 x 0.00006 + 0.0001
    assert cost == Decimal("0.018") + Decimal("0.006") + Decimal("0.012") + Decimal("0.0001")
    assert (row.cost_usd, row.priced) == (cost, True)
    assert (row.provider, row.provider_model_id, row.model, row.asked_model) == ("good", "good/gpt-4", "gpt-4",
                                                                                   "openai/gpt-4")  # fmt: skip
    assert (row.price_prompt, row.price_cached_prompt, row.price_completion, row.price_request) == (
        Decimal("0.00003"), Decimal("0.000015"), Decimal("0.00006"), Decimal("0.0001"),
    )  # fmt: skip
    assert [(a["provider"], a["outcome"]) for a in orjson.loads(row.attempts)] == [("bad", "503"), ("good", "ok")]
    assert (row.prompt_tokens, row.cached_prompt_tokens, row.completion_tokens, row.reasoning_tokens) == (
        1000, 400, 200, 50,
    )  # fmt: skip
    assert (row.key_name, row.status, row.outcome, row.finish_reason) == ("team-a", 200, "ok", "stop")
    assert (row.latency_ms, row.first_output_ms) == (250.0, 150.0)


def test_an_unpriced_offer_is_null_not_free_and_no_offer_served_costs_zero() -> None:
    unpriced = usage_record_of(served_record(UNPRICED), 0.1, request_cost(served_record(UNPRICED)))
    assert (unpriced.cost_usd, unpriced.priced, unpriced.price_prompt) == (None, False, None)
    record = RequestRecord("/v1/chat/completions", "req-2")
    record.routing("gpt-4", "gpt-4", stream=True)
    record.attempt_failed(FAILING, UpstreamStatus(503, retryable=True, body=b"down"), 0.01, final=True)
    record.answered(503, "all_providers_failed")
    row = usage_record_of(record, 0.02, request_cost(record))
    assert (row.cost_usd, row.priced, row.provider, row.streamed) == (Decimal(0), True, None, True)
    assert row.first_output_ms is None


def test_a_spool_line_round_trips_exactly() -> None:
    row = usage_record_of(served_record(), 0.25, request_cost(served_record()))
    line = spool_line(row)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert from_spool_line(line) == row


def test_generation_shape_carries_the_record() -> None:
    row = usage_record_of(served_record(), 0.25, request_cost(served_record()))
    data = generation_json(row)
    assert data["id"] == "req-1"
    assert Decimal(str(data["total_cost"])) == row.cost_usd
    assert data["cost_usd"] == "0.0361"
    assert (data["tokens_prompt"], data["tokens_completion"], data["native_tokens_cached"]) == (1000, 200, 400)
    assert (data["provider_name"], data["finish_reason"], data["streamed"], data["latency"]) == ("good", "stop",
                                                                                                 False, 250)  # fmt: skip


def test_spool_appends_in_order_reads_back_and_is_bounded(tmp_path: Path) -> None:
    base = usage_record_of(served_record(), 0.25, request_cost(served_record()))
    rows = [base._replace(request_id=f"r{i}") for i in range(5)]
    spool = Spool(tmp_path, max_bytes=10 * len(spool_line(base)))
    assert spool.append(rows[:3]) == 0
    assert spool.append(rows[3:]) == 0
    [path] = spool.files()
    assert Spool.read(path) == rows
    assert spool.find("r3") == rows[3]
    assert spool.find("nope") is None
    many = [base._replace(request_id=f"x{i}") for i in range(6)]
    assert spool.append(many) == 6  # past the bound: the whole batch is dropped, the file unchanged
    assert Spool.read(path) == rows
    Spool.remove(path)
    assert not spool


def test_spool_skips_a_torn_last_line_and_drains_files_of_dead_processes(tmp_path: Path) -> None:
    base = usage_record_of(served_record(), 0.25, request_cost(served_record()))
    gone = Spool(tmp_path, 1 << 20, pid=2**22 + 12345)  # above any pid_max: no such process
    gone.append([base])
    with gone.path.open("ab") as out:
        out.write(spool_line(base._replace(request_id="torn"))[:40])
    live_other = Spool(tmp_path, 1 << 20, pid=os.getppid())
    live_other.append([base._replace(request_id="theirs")])
    mine = Spool(tmp_path, 1 << 20)
    assert mine.files() == [gone.path]  # another live process's file is its own to drain
    assert Spool.read(gone.path) == [base]


def test_a_request_id_is_the_proxys_own_even_when_the_client_repeats_one() -> None:
    from proxy.http.identity import request_id

    first, second = request_id(b"trace-42"), request_id(b"trace-42")
    assert first != second and first.startswith("trace-42-") and second.startswith("trace-42-")
    assert len(request_id(None)) == 32 and request_id(b"not a slug!") != "not a slug!"


def test_usage_records_are_on_with_a_database_unless_turned_off() -> None:
    from proxy.config import config_from_mapping

    def enabled(usage: dict[str, object], env: dict[str, str]) -> bool:
        return config_from_mapping({"usage": usage}, "(test)", env).usage_enabled

    database = {"DATABASE_URL": "postgresql://u@127.0.0.1:5432/db"}
    assert enabled({}, database) and not enabled({}, {})
    assert not enabled({"enabled": False}, database) and not enabled({"enabled": True}, {})


async def test_a_full_spool_drops_and_counts_and_an_unreachable_database_spools(tmp_path: Path) -> None:
    from proxy.billing.writer import UsageWriter
    from proxy.config import UsageSettings
    from proxy.runtime.metrics import Metrics

    base = usage_record_of(served_record(), 0.25, request_cost(served_record()))
    line = len(spool_line(base))
    settings = UsageSettings(spool_max_mb=2.5 * line / (1024 * 1024))
    metrics = Metrics()
    writer = UsageWriter(lambda: settings, lambda: None, Spool(tmp_path, 0), metrics)  # no pool: the database is away
    def add(ident: str) -> None:
        writer.add(ident, lambda: base._replace(request_id=ident))

    add("a0")
    add("a1")
    assert await writer.find("a1") is not None  # pending, found before any flush
    await writer.flush()
    assert writer.pending == 0 and await writer.find("a1") == base._replace(request_id="a1")  # now in the spool
    add("b0")
    add("b1")
    await writer.flush()  # two more lines would pass 2.5 lines: the batch is dropped
    metrics.flush()
    text = metrics.exposition().decode()
    assert 'gatewayz_usage_records_total{result="spooled"} 2.0' in text
    assert 'gatewayz_usage_records_total{result="dropped"} 2.0' in text
    assert await writer.find("b0") is None
