"""Metric label values bounded to a known set (catalog models, configured providers), so that a
name a client or a peer made up never creates a new time series: anything else is `other`."""

from __future__ import annotations

OTHER = "other"


def bounded_label(value: str, known: frozenset[str]) -> str:
    """`value` when it is one of `known`, else `other`."""
    return value if value in known else OTHER
