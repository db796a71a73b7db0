"""Database connections for the daemon path (asyncpg), and DSN redaction."""
from __future__ import annotations

import re

import asyncpg

CONNECT_TIMEOUT = 10.0
STATEMENT_TIMEOUT_MS = 300_000

_PASSWORD_IN_URI = re.compile(r"(postgres(?:ql)?://[^:/@?#]*):[^@/?#]*@")
_PASSWORD_PARAM = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def redact(text: str) -> str:
    """A DSN or message with any password replaced by ``***``."""
    text = _PASSWORD_IN_URI.sub(r"\1:***@", text)
    return _PASSWORD_PARAM.sub(r"\1***", text)


async def connect(dsn: str, *, application_name: str = "synchrod") -> asyncpg.Connection:
    return await asyncpg.connect(
        dsn, timeout=CONNECT_TIMEOUT, command_timeout=STATEMENT_TIMEOUT_MS / 1000,
        server_settings={"application_name": application_name,
                         "statement_timeout": str(STATEMENT_TIMEOUT_MS)})


# Errors that mean "the database is not reachable now", as opposed to a bug.
UNREACHABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
               asyncpg.InterfaceError, asyncpg.ConnectionDoesNotExistError, TimeoutError,
               asyncpg.AdminShutdownError, asyncpg.InvalidCatalogNameError,
               asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidPasswordError)
