"""Named SQL: the queries in `proxy/store/sql/queries.sql`, one `-- name: <name>` block each.

Queries are read once at import. Every value reaches Postgres as a bind parameter (`$1`, `$2`...);
no SQL is ever assembled from user input. An unknown name is a bug and raises `KeyError`.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a `.sql` file into its named blocks; a duplicate name is an error."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"duplicate query name {name!r}")
        queries[name] = body.strip().rstrip(";")
    return queries


QUERIES = parse_queries(resources.files("proxy.store").joinpath("sql/queries.sql").read_text(encoding="utf-8"))


def query(name: str) -> str:
    """The SQL text of the named query."""
    return QUERIES[name]
