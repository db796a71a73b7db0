"""The daemons in the replay database: their published state
(``synchrod.daemons``), their claims on sources (session advisory locks) and
the "run now" notifications.

Each daemon writes its row through its owner connection, so the row's
``backend_pid`` is alive exactly as long as the daemon's source locks are.
"""
from __future__ import annotations

import json

import asyncpg

PUBLISH = """
INSERT INTO synchrod.daemons AS d (name, host, pid, backend_pid, version, config_path,
                                   config_loaded_at, config_error, config_error_at, state,
                                   sources, started_at, targets, storage, seen_at)
VALUES ($1, $2, $3, pg_backend_pid(), $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12::jsonb,
        $13::jsonb, now())
ON CONFLICT (name) DO UPDATE SET
    backend_pid = excluded.backend_pid, config_path = excluded.config_path,
    config_loaded_at = excluded.config_loaded_at, config_error = excluded.config_error,
    config_error_at = excluded.config_error_at, state = excluded.state,
    sources = excluded.sources, targets = excluded.targets, storage = excluded.storage,
    seen_at = now()
"""

# a row's daemon is alive exactly while its owner connection's backend is
_BACKENDS = "(SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)"

# rows whose owner connection is gone: killed daemons
FORGET_DEAD = f"DELETE FROM synchrod.daemons WHERE backend_pid NOT IN {_BACKENDS}"

FORGET = "DELETE FROM synchrod.daemons WHERE name = $1"

_LIVE = f"""
SELECT name, host, pid, version, config_path, config_loaded_at, config_error, config_error_at,
       state, sources, started_at, seen_at, targets, storage
  FROM synchrod.daemons
 WHERE backend_pid IN {_BACKENDS}
 ORDER BY started_at, name
"""

# the other live daemons (owner connection alive, not stopping) and the sources they could work
_PEERS = f"""
SELECT name, sources FROM synchrod.daemons
 WHERE backend_pid IN {_BACKENDS} AND name <> $1 AND state <> 'stopping'
"""


def _decoded(value: str | None, empty):
    """A published JSON column decoded (``empty`` when it is null or empty)."""
    return json.loads(value) if value else empty


async def peer_sources(conn: asyncpg.Connection, me: str) -> dict[str, set[str]]:
    """Each other live daemon → the sources it publishes as enabled (neither
    disabled in its configuration nor through the API): what it can work."""
    out = {}
    for r in await conn.fetch(_PEERS, me):
        sources = _decoded(r["sources"], {})
        out[r["name"]] = {n for n, st in sources.items()
                          if st.get("enabled", True) and not st.get("disabled_by")}
    return out


def publish_args(snapshot: dict) -> tuple:
    """The PUBLISH parameters from a daemon's snapshot, sources and targets as JSON
    (targets ``{}`` when the snapshot has none)."""
    s = snapshot
    return (s["name"], s["host"], s["pid"], s["version"], s["config_path"], s["config_loaded_at"],
            s["config_error"], s["config_error_at"], s["state"], json.dumps(s["sources"]),
            s["started_at"], json.dumps(s.get("targets", {})), json.dumps(s.get("storage", [])))


async def live(conn: asyncpg.Connection) -> list[dict]:
    """Rows of the daemons whose owner connection is alive, oldest first, sources and
    targets decoded; [] when synchrod.daemons does not exist yet."""
    if not await conn.fetchval("SELECT to_regclass('synchrod.daemons') IS NOT NULL"):
        return []
    out = []
    for r in await conn.fetch(_LIVE):
        row = dict(r)
        row["sources"], row["targets"] = _decoded(row["sources"], {}), _decoded(row["targets"], {})
        row["storage"] = _decoded(row["storage"], [])
        out.append(row)
    return out


def owners(live: list[dict]) -> dict[str, dict]:
    """Source → the live daemon (its row) that holds the source's lock."""
    return {name: d for d in live for name, st in d["sources"].items() if st.get("owned")}


# Two-key advisory locks (class, hashtext(sysname)): a key space of their own,
# apart from the one-key sid locks of a batch commit.
OWNER_CLASS = 0x5359_4E43  # "SYNC"
RUN_NOW_CHANNEL = "synchrod_run_now"

CLAIM_SOURCES = """
SELECT n FROM unnest($2::text[]) AS n WHERE pg_try_advisory_lock($1, hashtext(n))
"""
RELEASE_SOURCES = "SELECT count(pg_advisory_unlock($1, hashtext(n))) FROM unnest($2::text[]) AS n"
# singleton jobs (space management, ...): one live daemon runs each
DUTY_CLASS = 0x5359_4E44  # "SYND"
CLAIM_DUTY = "SELECT pg_try_advisory_lock($1, hashtext($2))"

_NOTIFY = "SELECT pg_notify($1, $2)"
_LISTENING = """
SELECT count(*) FROM pg_stat_activity
 WHERE application_name LIKE 'synchrod:owner:%' AND datname = current_database()
   AND pid <> pg_backend_pid()
"""


async def notify_run_now(conn: asyncpg.Connection, source: str = "") -> int:
    """Asks every daemon to skip its sleep (for one source, or all when empty);
    returns how many daemons are listening."""
    await conn.execute(_NOTIFY, RUN_NOW_CHANNEL, source)
    return await conn.fetchval(_LISTENING)
