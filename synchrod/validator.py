"""Declarative validation of the YAML configuration.

Every error names the key path (``sources[1].mount_path``) so an operator can
find the line to fix. The validator only checks and normalises plain data;
``config.py`` turns the result into typed, immutable objects.
"""
from __future__ import annotations

import codecs
import datetime as dt
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

REQUIRED = object()


class ConfigError(Exception):
    """A configuration error at a key path."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- scalar checkers: (value, path) -> normalised value -------------------

def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, not {value!r}")
    return value


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[Any, str], int]:
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
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ConfigError(path, "must be 1-63 characters of letters, digits, '_', '.', '-' "
                                f"starting with a letter or digit, not {value!r}")
    return value


def text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"must be a non-empty string, not {value!r}")
    return value


def choice(*options: str) -> Callable[[Any, str], str]:
    def check(value: Any, path: str) -> str:
        if value not in options:
            raise ConfigError(path, f"must be one of {', '.join(options)}, not {value!r}")
        return value
    return check


def abs_path(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(path, f"must be an absolute path, not {value!r}")
    norm = os.path.normpath(value)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def dsn(value: Any, path: str) -> str:
    """A libpq connection URI; ``${VAR}`` is replaced from the environment."""
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
    from .dbconn import unsupported_params  # late: keeps the validator free of asyncpg at import
    bad = unsupported_params(value)
    if bad:
        raise ConfigError(path, f"unsupported connection parameter(s): {', '.join(bad)}")
    return value


def timestamp(value: Any, path: str) -> dt.datetime:
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
    if not isinstance(value, str):
        raise ConfigError(path, f"must be HOST:PORT, not {value!r}")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(path, f"must be HOST:PORT with a port 1-65535, not {value!r}")
    return value


# --- structure -----------------------------------------------------------

@dataclass(frozen=True)
class Field:
    check: Callable[[Any, str], Any] | "Section" | "ListOf"
    default: Any = REQUIRED
    nullable: bool = False


@dataclass(frozen=True)
class Section:
    fields: dict[str, Field]
    nullable: bool = False

    def __call__(self, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(path, "must be a mapping")
        for key in value:
            if key not in self.fields:
                raise ConfigError(_join(path, str(key)), "unknown key")
        out: dict[str, Any] = {}
        for key, spec in self.fields.items():
            sub = _join(path, key)
            if key not in value or (value[key] is None and spec.default is not REQUIRED
                                    and not spec.nullable):
                if spec.default is REQUIRED:
                    raise ConfigError(sub, "is required")
                default = spec.default() if callable(spec.default) else spec.default
                # an omitted section still gets its own defaults filled in
                out[key] = (spec.check(default, sub) if isinstance(spec.check, Section) and default is not None
                            else default)
                continue
            raw = value[key]
            if raw is None:
                if spec.nullable:
                    out[key] = None
                    continue
                raise ConfigError(sub, "must not be empty")
            out[key] = spec.check(raw, sub)
        return out


@dataclass(frozen=True)
class ListOf:
    item: Callable[[Any, str], Any]
    min_items: int = 0
    unique: bool = False    # refuse an item (after normalisation) listed twice

    def __call__(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise ConfigError(path, "must be a list")
        if len(value) < self.min_items:
            raise ConfigError(path, f"must have at least {self.min_items} item(s)")
        out = [self.item(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if self.unique:
            for i, v in enumerate(out):
                if v in out[:i]:
                    raise ConfigError(f"{path}[{i}]", f"{v!r} is listed twice "
                                                      f"(first at {path}[{out.index(v)}])")
        return out

