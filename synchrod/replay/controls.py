"""What the monitor API decides for every daemon, in the replay database so a
restart keeps it: sources disabled (``synchrod.source_control``) and tokens
revoked by a logout (``synchrod.revoked_tokens``)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

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
    """Disables ``source`` for every daemon, recording ``user``; idempotent (a repeat
    records the new user and time)."""
    await conn.execute(_DISABLE, source, user)


async def enable(conn: asyncpg.Connection, source: str) -> None:
    """Lifts the API's disabling of ``source``; a no-op when it was not disabled."""
    await conn.execute(_ENABLE, source)


_REVOKE = """
INSERT INTO synchrod.revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING
"""
_REVOKED = "SELECT jti, expires_at FROM synchrod.revoked_tokens WHERE expires_at > now()"
_FORGET_EXPIRED = "DELETE FROM synchrod.revoked_tokens WHERE expires_at <= now()"


async def revoke(conn: asyncpg.Connection, jti: str, expires_at: dt.datetime) -> None:
    """Revokes the token ``jti`` until ``expires_at``; idempotent."""
    await conn.execute(_REVOKE, jti, expires_at)


async def revoked(conn: asyncpg.Connection) -> dict[str, float]:
    """jti → expiry (epoch seconds) of the logged-out tokens still valid otherwise."""
    await conn.execute(_FORGET_EXPIRED)
    return {r["jti"]: r["expires_at"].timestamp() for r in await conn.fetch(_REVOKED)}


_FORGET_ATTEMPTS = """
DELETE FROM synchrod.attempts
 WHERE source = $1 AND ($2::text[] IS NULL OR sid = ANY($2::text[]))
"""


async def forget_attempts(conn: asyncpg.Connection, source: str,
                          sids: Sequence[str] | None) -> int:
    """Resets the failure count and back-off of a source's calls (``retry``)."""
    status = await conn.execute(_FORGET_ATTEMPTS, source, list(sids) if sids else None)
    return int(status.split()[-1])
