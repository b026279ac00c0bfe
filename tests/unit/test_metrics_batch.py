"""Batched metrics: what `/metrics` shows is exactly what prometheus would show unbatched, at every
scrape, and several workers still share their figures at once (no batching there)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from proxy.runtime.metrics import LATENCY_BUCKETS, OVERHEAD_BUCKETS, Metrics, PendingCounter, PendingHistogram

# values on, just below and just above bucket bounds, zero, the largest bound, past it, tiny and huge
OBSERVED = [0.0, 0.005, 0.0050001, 0.00499, 0.01, 0.3, 1.0, 120.0, 120.5, 1e-9, 3600.0, 0.0001, 0.1]


def _lines(text: bytes, prefix: str) -> list[str]:
    return [line for line in text.decode().splitlines() if line.startswith(prefix) and "_created" not in line]


def test_a_batched_histogram_renders_as_prometheus_observing_each_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics = Metrics()
    reference = CollectorRegistry()
    direct = Histogram("gatewayz_request_duration_seconds", "d", ["route"], buckets=LATENCY_BUCKETS,
                       registry=reference)
    overhead = Histogram("gatewayz_overhead_seconds", "o", buckets=OVERHEAD_BUCKETS, registry=reference)
    batched = metrics.child(metrics.duration, "/v1/chat/completions")
    assert isinstance(batched, PendingHistogram)
    for value in OBSERVED:
        batched.observe(value)
        direct.labels("/v1/chat/completions").observe(value)
        metrics.child(metrics.overhead).observe(value)
        overhead.observe(value)
    ours, theirs = metrics.exposition(), generate_latest(reference)
    for name in ("gatewayz_request_duration_seconds_", "gatewayz_overhead_seconds_"):
        assert _lines(ours, name) == _lines(theirs, name)
        assert len(_lines(ours, name)) > len(OBSERVED) // 2  # the buckets, the count and the sum are there
    # a second scrape adds nothing twice; later observations add up to the earlier ones
    assert _lines(metrics.exposition(), "gatewayz_overhead") == _lines(theirs, "gatewayz_overhead")
    batched.observe(0.02)
    direct.labels("/v1/chat/completions").observe(0.02)
    assert _lines(metrics.exposition(), "gatewayz_request_duration") == _lines(
        generate_latest(reference), "gatewayz_request_duration")


def test_a_batched_counter_adds_up_and_refuses_a_negative_amount(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics = Metrics()
    tokens = metrics.child(metrics.tokens, "openai", "gpt-4", "prompt")
    assert isinstance(tokens, PendingCounter)
    assert metrics.child(metrics.tokens, "openai", "gpt-4", "prompt") is tokens  # one per label set
    for amount in (1, 2.5, 0, 10**6):
        tokens.inc(amount)
    with pytest.raises(ValueError):
        tokens.inc(-1)
    text = metrics.exposition().decode()
    assert 'gatewayz_tokens_total{kind="prompt",model="gpt-4",provider="openai"} 1.0000035e+06' in text
    metrics.child(metrics.tokens, "openai", "gpt-4", "prompt").inc()
    assert 'gatewayz_tokens_total{kind="prompt",model="gpt-4",provider="openai"} 1.0000045e+06' in (
        metrics.exposition().decode())


def test_several_workers_write_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """prometheus's own children, written at once: the other workers read this one's files at any time
    (tests/test_serve.py checks the figure across two real workers)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    metrics = Metrics()
    assert isinstance(metrics.child(metrics.requests, "/v1/chat/completions", "gpt-4", "ok"), Counter)
    assert isinstance(metrics.child(metrics.duration, "/v1/chat/completions"), Histogram)
