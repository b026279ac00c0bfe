"""Reading one TOML table into a dataclass, with errors that name the file and the key.

`TableReader(source).table(data, cls, where)` checks every key against the dataclass's fields (an
unknown key is an error that lists the known ones), every value against the field's annotation, and
raises `ConfigError("<file>: <table.key>: <what is wrong>")`. `proxy.config` builds `Config` with it.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar, cast

from proxy.errors import ConfigError
from proxy.types import ENDPOINTS, Strategy

T = TypeVar("T")
_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "float": ((int, float), "a number"),
    "int": (int, "an integer"),
    "bool": (bool, "true or false"),
    "str": (str, "a string"),
}


class TableReader:
    """Reads one TOML table into a dataclass, naming the file and key in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {message}")

    def table(self, data: Mapping[str, Any], cls: type[T], where: str, skip: tuple[str, ...] = ()) -> T:
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = f"{where}.{key}"
            if key not in known or key in skip:
                raise self.fail(name, f"unknown key (known: {', '.join(k for k in known if k not in skip)})")
            values[key] = self.value(name, value, known[key].type)
        try:
            return cls(**values)
        except TypeError as exc:
            missing = [f for f in known if f not in values and f not in skip]
            raise self.fail(where, f"missing required key(s): {', '.join(missing)}") from exc

    def value(self, name: str, value: Any, annotation: object) -> Any:
        kind = str(annotation)
        if "Strategy" in kind:
            return self.strategy(name, value)
        if value is None and "None" in kind:
            return None
        if kind.startswith("tuple[str"):
            return self.endpoints(name, value) if name.endswith(".endpoints") else self.words(name, value)
        base = kind.split(" ", 1)[0]
        if base not in _TYPES:
            raise self.fail(name, "this key cannot be set here")
        accepted, label = _TYPES[base]
        if isinstance(value, bool) != (base == "bool") or not isinstance(value, accepted):
            raise self.fail(name, f"expected {label}, got {type(value).__name__}")
        return float(cast(float, value)) if base == "float" else value

    def endpoints(self, name: str, value: Any) -> tuple[str, ...]:
        """A list of endpoint kinds (`proxy.types.ENDPOINTS`), each named once."""
        if not isinstance(value, list) or not value or any(v not in ENDPOINTS for v in value):
            raise self.fail(name, f"expected a non-empty list of {' | '.join(ENDPOINTS)}, got {value!r}")
        return tuple(dict.fromkeys(value))

    def words(self, name: str, value: Any) -> tuple[str, ...]:
        """A TOML array of non-empty strings, duplicates dropped, order kept."""
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(name, "expected an array of non-empty strings")
        return tuple(dict.fromkeys(v.strip() for v in value))

    def choice(self, name: str, value: str | None, choices: tuple[str, ...]) -> None:
        if value is not None and value not in choices:
            raise self.fail(name, f"expected one of {' | '.join(choices)}, got {value!r}")

    def strategy(self, name: str, value: Any) -> Strategy:
        try:
            return Strategy(value)
        except ValueError:
            choices = " | ".join(s.value for s in Strategy)
            raise self.fail(name, f"expected one of {choices}, got {value!r}") from None


def check_positive(reader: TableReader, settings: object, where: str) -> None:
    """Every number of a settings dataclass is above 0 (a `port` may be 0: any free port)."""
    for f in fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, f.name)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric and value <= 0 and f.name != "port":
            raise reader.fail(f"{where}.{f.name}", f"must be greater than 0, got {value}")
    port = getattr(settings, "port", 1)
    if not 0 <= port <= 65535:
        raise reader.fail(f"{where}.port", f"must be a TCP port, got {port}")


def check_share(reader: TableReader, name: str, value: float | None) -> None:
    """A share of requests (a budget): greater than 0 and at most 1, or unset."""
    if value is not None and not 0 < value <= 1:
        raise reader.fail(name, f"must be a share of requests, greater than 0 and at most 1, got {value:g}")


URL_SCHEMES = {
    "DATABASE_URL": (("postgresql", "postgres"), "postgresql://user:password@host:5432/dbname"),
    "REDIS_URL": (("redis", "rediss", "unix"), "redis://host:6379/0"),
}


def check_url(name: str, value: str) -> None:
    """A connection URL's shape (scheme, port), checked at start-up so that a typo is one
    `ConfigError` naming the variable, not a driver's traceback later. The value itself is never
    shown: it may hold a password."""
    schemes, example = URL_SCHEMES[name]
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number from 0 to 65535)
    except ValueError as exc:
        raise ConfigError(f"{name}: not a usable URL ({exc}); expected the shape {example}") from None
    if parts.scheme not in schemes:
        got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        expected = " or ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{name}: expected a URL starting with {expected} ({got}), e.g. {example}")
