"""Declarative validation of the YAML configuration: the structure checkers
(:class:`Section`, :class:`ListOf`, :class:`Field`) and the scalar checkers.

Every error names the key path (``sources[1].mount_path``) so an operator can
find the line to fix, and validation goes on past an error: a :class:`Section`
checks every key and a :class:`ListOf` every item, so one run lists every
mistake (:meth:`ConfigError.of`). The validator only checks and normalises
plain data; ``model.py`` turns the result into typed, immutable objects.
"""
from __future__ import annotations

import codecs
import datetime as dt
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError

REQUIRED = object()


class _Invalid:
    """The value of a key whose check failed (its error is already listed)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<invalid>"


# stands in the partial result for a value that failed its check: the
# cross-field rules skip what depends on it
INVALID = _Invalid()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- scalar checkers: (value, path) -> normalised value -------------------

def boolean(value: Any, path: str) -> bool:
    """``value`` itself if it is true or false (not 1, not "yes")."""
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, not {value!r}")
    return value


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[Any, str], int]:
    """A checker of an integer (not a bool, not a float) within ``lo``..``hi``
    inclusive, either bound optional."""
    def check(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"must be an integer, not {value!r}")
        if lo is not None and value < lo:
            raise ConfigError(path, f"must be at least {lo}, not {value}")
        if hi is not None and value > hi:
            raise ConfigError(path, f"must be at most {hi}, not {value}")
        return value
    return check


def number(lo: float | None = None, hi: float | None = None,
           lo_exclusive: bool = False) -> Callable[[Any, str], float]:
    """A checker of a finite number (int or float, not a bool) within
    ``lo``..``hi`` (``lo`` itself refused when ``lo_exclusive``), returned as
    a float."""
    def check(value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(path, f"must be a finite number, not {value!r}")
        if lo is not None and (value <= lo if lo_exclusive else value < lo):
            raise ConfigError(path, f"must be {'greater than' if lo_exclusive else 'at least'} {lo}, not {value}")
        if hi is not None and value > hi:
            raise ConfigError(path, f"must be at most {hi}, not {value}")
        return float(value)
    return check


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def name(value: Any, path: str) -> str:
    """``value`` if it is a name: 1-63 letters, digits, '_', '.', '-',
    starting with a letter or digit."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ConfigError(path, "must be 1-63 characters of letters, digits, '_', '.', '-' "
                                f"starting with a letter or digit, not {value!r}")
    return value


def text(value: Any, path: str) -> str:
    """``value`` if it is a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"must be a non-empty string, not {value!r}")
    return value


def choice(*options: str) -> Callable[[Any, str], str]:
    """A checker of a value that must be one of ``options``."""
    def check(value: Any, path: str) -> str:
        if value not in options:
            raise ConfigError(path, f"must be one of {', '.join(options)}, not {value!r}")
        return value
    return check


def abs_path(value: Any, path: str) -> str:
    """An absolute path, normalised (no ``..``, ``.``, trailing or doubled
    slashes): equal directories compare equal."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(path, f"must be an absolute path, not {value!r}")
    norm = os.path.normpath(value)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def dsn(value: Any, path: str) -> str:
    """A libpq connection URI; ``${VAR}`` is replaced from the environment.
    Its errors never echo the value (it may hold a password)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(path, "must be a PostgreSQL connection URI")

    def expand(match: re.Match) -> str:
        var = match.group(1)
        if var not in os.environ:
            raise ConfigError(path, f"environment variable {var} is not set")
        return os.environ[var]

    value = _ENV_RE.sub(expand, value)
    if not value.startswith(("postgresql://", "postgres://")):
        raise ConfigError(path, "must be a URI starting with postgresql://")
    from ..pg.connect import (
        unsupported_params,  # late: keeps the validator free of asyncpg at import
    )
    bad = unsupported_params(value)
    if bad:
        raise ConfigError(path, f"unsupported connection parameter(s): {', '.join(bad)}")
    return value


def timestamp(value: Any, path: str) -> dt.datetime:
    """An aware datetime from an ISO 8601 string or a YAML timestamp; a naive
    one is taken as local time."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(path, f"must be an ISO 8601 date and time, not {value!r}") from None
    else:
        raise ConfigError(path, f"must be an ISO 8601 date and time, not {value!r}")
    if parsed.tzinfo is None:  # a naive time is local time, as operators write it
        parsed = parsed.astimezone()
    return parsed


# every byte below 0x80 must be that ASCII character, alone and both ways:
# the schema's own values (state, cftype, cfpath) are ASCII, and a stateful
# or escaping codec (utf-7, hz, iso2022, raw_unicode_escape) or a wide one
# (utf-16, utf-32) would read them as something else
# (the backslash only in valid escapes: unicode_escape warns about others)
_ASCII_PROBE = (bytes(c for c in range(128) if c != 0x5C)
                + b"\\u0041\\x41\\\\+AEE-~{~}\x1b(B\x1b$B")


def text_codec(value: Any, path: str) -> str:
    """A Python codec name for text stored as bytes; normalised to the
    codec's canonical name (``latin1`` -> ``iso8859-1``)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"must be a codec name such as latin1 or cp1250, not {value!r}")
    try:
        canonical = codecs.lookup(value).name
    except (LookupError, TypeError, ValueError):
        raise ConfigError(path, f"{value!r} is not a codec Python knows") from None
    try:
        compatible = (_ASCII_PROBE.decode(canonical) == _ASCII_PROBE.decode("ascii")
                      and _ASCII_PROBE.decode("ascii").encode(canonical) == _ASCII_PROBE)
    except (LookupError, UnicodeError, TypeError, ValueError):
        compatible = False  # bytes-to-bytes codecs (base64, rot13) or one that refuses ASCII
    if not compatible:
        raise ConfigError(path, f"{value!r} is not an ASCII-compatible text encoding")
    return canonical


def listen_address(value: Any, path: str) -> str:
    """``value`` if it is HOST:PORT with a port 1-65535 (``[::1]:9218`` for IPv6)."""
    if not isinstance(value, str):
        raise ConfigError(path, f"must be HOST:PORT, not {value!r}")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(path, f"must be HOST:PORT with a port 1-65535, not {value!r}")
    return value


# --- structure -----------------------------------------------------------

Checker = Callable[[Any, str], Any]


def _check(check: "Checker | Section | ListOf", value: Any, path: str,
           errors: list[ConfigError]) -> Any:
    """``check`` applied to ``value``; its errors appended to ``errors`` (then
    the result is :data:`INVALID`, or a partial one for a Section or ListOf)."""
    if isinstance(check, (Section, ListOf)):
        return check.collect(value, path, errors)
    try:
        return check(value, path)
    except ConfigError as exc:
        errors.extend(exc.errors)
        return INVALID


def _raise_any(errors: list[ConfigError]) -> None:
    if errors:
        raise ConfigError.of(errors)


@dataclass(frozen=True)
class Field:
    """One key of a :class:`Section`: its checker, its default (``REQUIRED``:
    none; a callable: called for a fresh one) and whether null is a value."""

    check: Checker | "Section" | "ListOf"
    default: Any = REQUIRED
    nullable: bool = False


@dataclass(frozen=True)
class Section:
    """A mapping with a fixed set of keys, each checked by its :class:`Field`."""

    fields: dict[str, Field]
    nullable: bool = False

    def __call__(self, value: Any, path: str) -> dict[str, Any]:
        """The checked mapping (every key present, defaults filled in), or
        one :class:`ConfigError` listing every error found in it."""
        errors: list[ConfigError] = []
        out = self.collect(value, path, errors)
        _raise_any(errors)
        return out

    def collect(self, value: Any, path: str, errors: list[ConfigError]) -> Any:
        """Checks every key of ``value`` and appends each error to ``errors``,
        in the file's order of keys (unknown keys among them), then the
        required keys that are missing. Returns the mapping with every key of
        the schema, a failed value being :data:`INVALID`; :data:`INVALID`
        itself when ``value`` is not a mapping."""
        if value is None:
            value = {}
        if not isinstance(value, dict):
            errors.append(ConfigError(path, "must be a mapping"))
            return INVALID
        given: dict[str, Any] = {}
        for key, raw in value.items():
            spec = self.fields.get(key) if isinstance(key, str) else None
            sub = _join(path, str(key))
            if spec is None:
                errors.append(ConfigError(sub, "unknown key"))
            elif raw is None and spec.nullable:
                given[key] = None
            elif raw is None and spec.default is REQUIRED:
                errors.append(ConfigError(sub, "must not be empty"))
                given[key] = INVALID
            elif raw is not None:
                given[key] = _check(spec.check, raw, sub, errors)
            # else: null for a key with a default is the key omitted
        out: dict[str, Any] = {}
        for key, spec in self.fields.items():
            sub = _join(path, key)
            if key in given:
                out[key] = given[key]
            elif spec.default is REQUIRED:
                errors.append(ConfigError(sub, "is required"))
                out[key] = INVALID
            else:
                default = spec.default() if callable(spec.default) else spec.default
                # an omitted section still gets its own defaults filled in
                out[key] = (_check(spec.check, default, sub, errors)
                            if isinstance(spec.check, Section) and default is not None else default)
        return out


@dataclass(frozen=True)
class ListOf:
    """A list whose every item is checked by ``item``."""

    item: Checker | Section
    min_items: int = 0
    unique: bool = False    # refuse an item (after normalisation) listed twice

    def __call__(self, value: Any, path: str) -> list[Any]:
        """The list of checked items, or one :class:`ConfigError` listing every
        error found in it."""
        errors: list[ConfigError] = []
        out = self.collect(value, path, errors)
        _raise_any(errors)
        return out

    def collect(self, value: Any, path: str, errors: list[ConfigError]) -> Any:
        """Checks every item of ``value`` and appends each error to ``errors``
        in the order of the items (then any item listed twice). Returns the
        list, a failed item being :data:`INVALID`; :data:`INVALID` itself when
        ``value`` is not a list."""
        if not isinstance(value, list):
            errors.append(ConfigError(path, "must be a list"))
            return INVALID
        if len(value) < self.min_items:
            errors.append(ConfigError(path, f"must have at least {self.min_items} item(s)"))
        out = [_check(self.item, v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
        if self.unique:
            for i, v in enumerate(out):
                first = next((j for j, w in enumerate(out[:i]) if w is not INVALID and w == v), None)
                if v is not INVALID and first is not None:
                    errors.append(ConfigError(f"{path}[{i}]", f"{v!r} is listed twice "
                                                              f"(first at {path}[{first}])"))
        return out
