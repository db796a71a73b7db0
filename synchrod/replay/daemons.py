"""The daemons' published state in the replay database (``synchrod.daemons``).

Each daemon writes its row through its owner connection, so the row's
``backend_pid`` is alive exactly as long as the daemon's source locks are.
"""
from __future__ import annotations

import json

import asyncpg

PUBLISH = """
INSERT INTO synchrod.daemons AS d (name, host, pid, backend_pid, version, config_path,
                                   config_loaded_at, config_error, config_error_at, state,
                                   sources, started_at, targets, seen_at)
VALUES ($1, $2, $3, pg_backend_pid(), $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12::jsonb, now())
ON CONFLICT (name) DO UPDATE SET
    backend_pid = excluded.backend_pid, config_path = excluded.config_path,
    config_loaded_at = excluded.config_loaded_at, config_error = excluded.config_error,
    config_error_at = excluded.config_error_at, state = excluded.state,
    sources = excluded.sources, targets = excluded.targets, seen_at = now()
"""

# rows whose owner connection is gone: killed daemons
FORGET_DEAD = """
DELETE FROM synchrod.daemons
 WHERE backend_pid NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)
"""

FORGET = "DELETE FROM synchrod.daemons WHERE name = $1"

_LIVE = """
SELECT name, host, pid, version, config_path, config_loaded_at, config_error, config_error_at,
       state, sources, started_at, seen_at, targets
  FROM synchrod.daemons
 WHERE backend_pid IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)
 ORDER BY started_at, name
"""


def publish_args(snapshot: dict) -> tuple:
    s = snapshot
    return (s["name"], s["host"], s["pid"], s["version"], s["config_path"], s["config_loaded_at"],
            s["config_error"], s["config_error_at"], s["state"], json.dumps(s["sources"]),
            s["started_at"], json.dumps(s.get("targets", {})))


async def live(conn: asyncpg.Connection) -> list[dict]:
    if not await conn.fetchval("SELECT to_regclass('synchrod.daemons') IS NOT NULL"):
        return []
    out = []
    for r in await conn.fetch(_LIVE):
        row = dict(r)
        row["sources"] = json.loads(row["sources"]) if row["sources"] else {}
        row["targets"] = json.loads(row["targets"]) if row["targets"] else {}
        out.append(row)
    return out


def owners(live: list[dict]) -> dict[str, dict]:
    """Source → the live daemon (its row) that holds the source's lock."""
    return {name: d for d in live for name, st in d["sources"].items() if st.get("owned")}
