"""The exceptions that cross packages, grouped by whose fault they are.

A module raising one of these imports it from here; so does the module
that catches it, so neither needs the other. Exceptions that stay inside
one package live there (``monitor.auth.Unauthorized``).
"""
from __future__ import annotations

# --- configuration -------------------------------------------------------------------

class ConfigError(Exception):
    """A configuration error at a key path (``sources[1].mount_path``), or
    several at once (:meth:`of`).

    ``errors`` lists every error, in the order found (a single error lists
    itself); ``path`` and ``message`` are those of the first, and ``str()``
    joins every ``path: message`` (just ``message`` for an empty path)
    with ``"; "``.
    """

    def __init__(self, path: str, message: str):
        """One error: ``message`` about the key at ``path`` ("" for the whole file)."""
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message
        self.errors: list[ConfigError] = [self]

    @classmethod
    def of(cls, errors: "list[ConfigError]") -> "ConfigError":
        """One error carrying every error of ``errors`` (aggregates flattened,
        order kept); the error itself when there is only one. ``errors``
        must not be empty."""
        flat = [one for err in errors for one in err.errors]
        if not flat:
            raise ValueError("ConfigError.of needs at least one error")
        if len(flat) == 1:
            return flat[0]
        agg = cls(flat[0].path, flat[0].message)
        agg.args = ("; ".join(str(one) for one in flat),)
        agg.errors = flat
        return agg


# --- databases -----------------------------------------------------------------------

class SameDatabaseError(Exception):
    """A source DSN names the replay database itself."""


class SchemaError(Exception):
    """A database lacks what synchrod needs; the message names every part."""


class TargetSchemaError(Exception):
    """synchrod's own schema in the replay database cannot be migrated."""


class TicketLost(Exception):
    """A batch found the tickets of some of its files taken by a repair (or
    their files gone): another worker judged them orphans. It must roll back."""

    def __init__(self, lost: list[str], missing: list[str]):
        super().__init__(f"{len(lost) + len(missing)} media file(s) of this batch were claimed "
                         "by a repair of another worker; the calls are taken again next cycle")
        self.lost, self.missing = lost, missing


# --- media ---------------------------------------------------------------------------

class CallError(Exception):
    """A fault of one call (missing file, unsafe path, size mismatch): an attempt."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class TargetError(Exception):
    """A fault of the replay storage (full, read-only): never marks a call."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class MediaStalled(Exception):
    """A source's media I/O made no progress for ``io_timeout`` seconds."""


# --- operators' actions and the monitor ------------------------------------------------

class ActionRefused(Exception):
    """An action the daemon will not take; ``status`` is the HTTP status that
    says why (404, 409, 503)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class SourceUnreachable(Exception):
    """A source's database cannot be reached for an operator's action."""


class SecretError(Exception):
    """The monitor's JWT secret file cannot be read or created safely."""
