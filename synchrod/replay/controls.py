"""Sources disabled through the monitor API (``synchrod.source_control``):
in the replay database, so every daemon obeys and a restart keeps them."""
from __future__ import annotations

import asyncpg

_DISABLED = "SELECT source, disabled_by FROM synchrod.source_control"
_DISABLE = """
INSERT INTO synchrod.source_control (source, disabled_by) VALUES ($1, $2)
ON CONFLICT (source) DO UPDATE SET disabled_by = EXCLUDED.disabled_by, disabled_at = now()
"""
_ENABLE = "DELETE FROM synchrod.source_control WHERE source = $1"


async def disabled(conn: asyncpg.Connection) -> dict[str, str]:
    """Source → the user who disabled it."""
    return {r["source"]: r["disabled_by"] for r in await conn.fetch(_DISABLED)}


async def disable(conn: asyncpg.Connection, source: str, user: str) -> None:
    await conn.execute(_DISABLE, source, user)


async def enable(conn: asyncpg.Connection, source: str) -> None:
    await conn.execute(_ENABLE, source)
