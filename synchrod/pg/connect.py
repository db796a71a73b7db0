"""Database connections for the daemon path (asyncpg), and DSN redaction."""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

CONNECT_TIMEOUT = 10.0
STATEMENT_TIMEOUT_MS = 300_000

_PASSWORD_IN_URI = re.compile(r"(postgres(?:ql)?://[^:/@?#]*):[^@/?#]*@")
_PASSWORD_PARAM = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def redact(text: str) -> str:
    """A DSN or message with any password replaced by ``***``."""
    text = _PASSWORD_IN_URI.sub(r"\1:***@", text)
    return _PASSWORD_PARAM.sub(r"\1***", text)


# URI parameters asyncpg understands, plus connect_timeout which synchrod maps
# itself (asyncpg would send it to the server as a setting and fail).
SUPPORTED_PARAMS = frozenset({
    "host", "port", "user", "password", "passfile", "dbname", "database", "sslmode",
    "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "ssl_min_protocol_version",
    "ssl_max_protocol_version", "target_session_attrs", "krbsrvname", "gsslib",
    "application_name", "connect_timeout"})


def unsupported_params(dsn: str) -> list[str]:
    """The DSN's query parameters synchrod cannot pass on, sorted; empty when none."""
    return sorted({k for k, _ in parse_qsl(urlsplit(dsn).query)} - SUPPORTED_PARAMS)


def split_dsn(dsn: str) -> tuple[str, float]:
    """(DSN for asyncpg, connect timeout in seconds)."""
    parts = urlsplit(dsn)
    params = parse_qsl(parts.query, keep_blank_values=True)
    timeout = CONNECT_TIMEOUT
    kept = []
    for key, value in params:
        if key == "connect_timeout":
            try:
                timeout = max(float(value), 1.0)
            except ValueError:
                pass
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), timeout


# In a transaction that fires CallREC's per-row triggers: their cached
# statements are planned once, not for every row (measured: half the cost).
WRITE_PLANS = "SET LOCAL plan_cache_mode = auto"


def server_settings(application_name: str) -> dict[str, str]:
    """The session settings of every synchrod connection: its application_name, a
    300 s statement_timeout and custom plans."""
    # Custom plans: synchrod's statements are few per batch, and a generic
    # plan cached while a table was small (a fresh replay database filling
    # up) would scan whole tables for every row later on.
    return {"application_name": application_name, "statement_timeout": str(STATEMENT_TIMEOUT_MS),
            "plan_cache_mode": "force_custom_plan"}


async def connect(dsn: str, *, application_name: str = "synchrod") -> asyncpg.Connection:
    """One connection to ``dsn`` with synchrod's session settings; the DSN's connect_timeout
    (default 10 s, at least 1 s) bounds the connect."""
    dsn, timeout = split_dsn(dsn)
    return await asyncpg.connect(dsn, timeout=timeout, command_timeout=STATEMENT_TIMEOUT_MS / 1000,
                                 server_settings=server_settings(application_name))


async def create_pool(dsn: str, *, application_name: str, max_size: int) -> asyncpg.Pool:
    """A pool of 1 to ``max_size`` connections to ``dsn``, each set up as :func:`connect`'s."""
    dsn, timeout = split_dsn(dsn)
    return await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, timeout=timeout,
                                     command_timeout=STATEMENT_TIMEOUT_MS / 1000,
                                     server_settings=server_settings(application_name))


# Errors that mean "the database is not reachable now", as opposed to a bug.
UNREACHABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
               asyncpg.InterfaceError, asyncpg.ConnectionDoesNotExistError, TimeoutError,
               asyncpg.AdminShutdownError, asyncpg.InvalidCatalogNameError,
               asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidPasswordError)
