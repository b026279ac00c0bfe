"""Named SQL of the health worker: `health/sql/queries.sql`, parsed like `proxy.store.queries`."""

from __future__ import annotations

from importlib import resources

from proxy.store.queries import parse_queries

QUERIES = parse_queries(resources.files("health").joinpath("sql/queries.sql").read_text(encoding="utf-8"))


def query(name: str) -> str:
    """The SQL text of the named query; an unknown name is a bug and raises `KeyError`."""
    return QUERIES[name]
