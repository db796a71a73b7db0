"""Creates and migrates synchrod's own schema in the replay database."""
from __future__ import annotations

import asyncpg

from ..errors import TargetSchemaError
from ..pg import sql

# Serialises migrations of several daemons starting at once.
MIGRATION_LOCK = 0x5359_4E43_4852_4F44  # "SYNCHROD"


_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS synchrod;
CREATE TABLE IF NOT EXISTS synchrod.schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Applies missing migrations in one transaction; returns their names."""
    has_callrec = await conn.fetchval("SELECT to_regclass('callrec.couples') IS NOT NULL")
    if not has_callrec:
        raise TargetSchemaError("the replay database has no callrec schema (callrec.couples missing)")
    applied_now = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(_BOOTSTRAP)
        applied = {r["version"] for r in await conn.fetch("SELECT version FROM synchrod.schema_migrations")}
        for version, name, text in sql.migrations(__package__):
            if version in applied:
                continue
            await conn.execute(text)
            await conn.execute("INSERT INTO synchrod.schema_migrations (version, name) VALUES ($1, $2)",
                               version, name)
            applied_now.append(name)
    return applied_now


async def current_version(conn: asyncpg.Connection) -> int | None:
    """The newest migration applied to this replay database; None when synchrod's
    schema was never created."""
    if not await conn.fetchval("SELECT to_regclass('synchrod.schema_migrations') IS NOT NULL"):
        return None
    return await conn.fetchval("SELECT max(version) FROM synchrod.schema_migrations")


def latest_version() -> int:
    """The newest migration this synchrod ships."""
    return sql.migrations(__package__)[-1][0]
