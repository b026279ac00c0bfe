"""Failure classification and Retry-After parsing: pure, one rule per test."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from proxy.failover.judge.classify import is_retryable_status, retry_after_seconds


@pytest.mark.parametrize("status", [401, 402, 403, 404, 408, 429, 500, 502, 503, 504, 529, 599])
def test_retryable(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [400, 405, 409, 413, 415, 422])
def test_not_retryable(status: int) -> None:
    assert not is_retryable_status(status)


def test_retry_after_seconds_and_ms() -> None:
    assert retry_after_seconds([("Retry-After", "7")], 0.0) == 7.0
    assert retry_after_seconds([("retry-after-ms", "1500"), ("Retry-After", "9")], 0.0) == 1.5
    assert retry_after_seconds([("x-other", "1")], 0.0) is None
    assert retry_after_seconds([("Retry-After", "soon")], 0.0) is None
    assert retry_after_seconds([("Retry-After", "nan")], 0.0) is None
    assert retry_after_seconds([("Retry-After", "999999")], 0.0) == 3600.0


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = formatdate(now + 30, usegmt=True)
    assert retry_after_seconds([("Retry-After", header)], now) == pytest.approx(30.0)
    past = formatdate(now - 30, usegmt=True)
    assert retry_after_seconds([("Retry-After", past)], now) == 0.0
