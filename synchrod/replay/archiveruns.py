"""Archive runs and the slots of each task in the replay database (SPEC §10):
a run row per slot (unique per task and slot, so each slot runs once
whichever daemon gets it), missed and skipped slots recorded as runs,
what each task's definition and last handled slot are, keyset pages of the
history."""
from __future__ import annotations

import datetime as dt

import asyncpg

from ..core import clock

_COLUMNS = """id, task, slot_at, state, message, started_at, finished_at, files_ok, files_failed,
 bytes, daemon, requested_by"""

_START = f"""
INSERT INTO synchrod.archive_runs (task, slot_at, state, daemon, requested_by)
VALUES ($1, $2, 'running', $3, $4)
ON CONFLICT (task, slot_at) DO NOTHING
RETURNING {_COLUMNS}
"""
_SLOT = """
INSERT INTO synchrod.archive_runs (task, slot_at, state, message, started_at, finished_at, daemon)
VALUES ($1, $2, $3, $4, $2, now(), $5)
ON CONFLICT (task, slot_at) DO NOTHING
RETURNING id
"""
_FINISH = f"""
UPDATE synchrod.archive_runs SET state = $2, message = $3, finished_at = now()
 WHERE id = $1 RETURNING {_COLUMNS}
"""
_INTERRUPTED = """
UPDATE synchrod.archive_runs
   SET state = 'failed', finished_at = now(),
       message = 'interrupted: the daemon running it stopped before it ended'
 WHERE task = $1 AND state = 'running'
"""
_GET = f"SELECT {_COLUMNS} FROM synchrod.archive_runs WHERE id = $1"
_PAGE = f"""
SELECT {_COLUMNS} FROM synchrod.archive_runs
 WHERE ($1::text IS NULL OR task = $1) AND id < $2
 ORDER BY id DESC LIMIT $3
"""
_ENTRY = "SELECT id, kind, destination, replay_path, sid, result, message FROM synchrod.archive_entries"
_ENTRIES = f"{_ENTRY} WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3"
_FAILED_MEDIA = f"{_ENTRY} WHERE run_id = $1 AND kind = 'media' AND result = 'failed' ORDER BY id LIMIT $2"
_LAST = f"""
SELECT DISTINCT ON (task) {_COLUMNS} FROM synchrod.archive_runs
 WHERE task = ANY($1::text[]) AND state NOT IN ('missed', 'skipped')
 ORDER BY task, id DESC
"""
_LAST_SUCCESS = """
SELECT task, max(finished_at) AS at FROM synchrod.archive_runs
 WHERE task = ANY($1::text[]) AND state = 'completed' GROUP BY task
"""
_TASKS = "SELECT name, definition, last_slot_at, once_done FROM synchrod.archive_tasks"
_TASK_SEEN = """
INSERT INTO synchrod.archive_tasks (name, definition, last_slot_at, once_done)
VALUES ($1, $2, $3, false)
ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition,
       last_slot_at = EXCLUDED.last_slot_at, once_done = false, updated_at = now()
"""
_SLOT_HANDLED = """
UPDATE synchrod.archive_tasks
   SET last_slot_at = greatest(coalesce(last_slot_at, $2), $2), once_done = once_done OR $3,
       updated_at = now()
 WHERE name = $1
"""
# ended runs only (a run longer than the history keeps must not lose its row while it goes on)
_PRUNE = """
DELETE FROM synchrod.archive_runs
 WHERE state <> 'running' AND coalesce(finished_at, started_at) < now() - make_interval(days => $1)
"""


def view(row: asyncpg.Record) -> dict:
    """A run as the API shows it."""
    out = dict(row)
    for k in ("slot_at", "started_at", "finished_at"):
        out[k] = clock.iso(out[k]) if out[k] else None
    return out


async def start(conn: asyncpg.Connection, task: str, slot_at: dt.datetime | None, daemon: str,
                requested_by: str | None = None) -> dict | None:
    """A new running run for the slot (``None``: by hand); None when the slot
    has a run already (another daemon took it)."""
    row = await conn.fetchrow(_START, task, slot_at, daemon, requested_by)
    return view(row) if row else None


async def record_slot(conn: asyncpg.Connection, task: str, slot_at: dt.datetime, state: str,
                      message: str, daemon: str) -> bool:
    """A slot that did not run: ``missed`` (no daemon ran then) or ``skipped``
    (the previous run was still going); once per slot. False when the slot
    had its row already (recorded before, or it ran)."""
    return await conn.fetchval(_SLOT, task, slot_at, state, message, daemon) is not None


async def finish(conn: asyncpg.Connection, run_id: int, state: str, message: str) -> dict:
    """Ends a run (completed, errors or failed) with its message."""
    return view(await conn.fetchrow(_FINISH, run_id, state, message))


async def interrupted(conn: asyncpg.Connection, task: str) -> int:
    """Ends as failed the task's runs left running by a process that died
    (the caller holds the task's lock, so none of them is going on)."""
    return int((await conn.execute(_INTERRUPTED, task)).split()[-1])


async def get(conn: asyncpg.Connection, run_id: int) -> dict | None:
    """One run, None when there is none."""
    row = await conn.fetchrow(_GET, run_id)
    return view(row) if row else None


async def page(conn: asyncpg.Connection, task: str | None, before: int | None,
               limit: int) -> tuple[list[dict], int | None]:
    """Runs newest first (of one task if given) below the id ``before``;
    (runs, the cursor of the next page or None)."""
    rows = await conn.fetch(_PAGE, task, before or 2 ** 63 - 1, limit + 1)
    runs = [view(r) for r in rows[:limit]]
    return runs, (runs[-1]["id"] if len(rows) > limit else None)


async def entries(conn: asyncpg.Connection, run_id: int, after: int,
                  limit: int) -> tuple[list[dict], int | None]:
    """A run's file entries after the id ``after``; (entries, next cursor or None)."""
    rows = await conn.fetch(_ENTRIES, run_id, after, limit + 1)
    out = [dict(r) for r in rows[:limit]]
    return out, (out[-1]["id"] if len(rows) > limit else None)


async def failed_media(conn: asyncpg.Connection, run_id: int, limit: int) -> list[dict]:
    """The first ``limit`` media files of a run that failed, with their messages."""
    return [dict(r) for r in await conn.fetch(_FAILED_MEDIA, run_id, limit)]


async def last_runs(conn: asyncpg.Connection, tasks: list[str]) -> dict[str, dict]:
    """Each task's latest run that ran (not missed or skipped)."""
    return {r["task"]: view(r) for r in await conn.fetch(_LAST, tasks)}


async def last_success(conn: asyncpg.Connection, tasks: list[str]) -> dict[str, dt.datetime]:
    """When each task's latest completed run ended."""
    return {r["task"]: r["at"] for r in await conn.fetch(_LAST_SUCCESS, tasks)}


async def tasks(conn: asyncpg.Connection) -> dict[str, dict]:
    """What the database remembers of each task: definition, last slot handled, once done."""
    return {r["name"]: dict(r) for r in await conn.fetch(_TASKS)}


async def task_seen(conn: asyncpg.Connection, name: str, definition: str,
                    since: dt.datetime) -> None:
    """A task that is new or whose definition changed: its slots count from ``since``."""
    await conn.execute(_TASK_SEEN, name, definition, since)


async def slot_handled(conn: asyncpg.Connection, name: str, slot_at: dt.datetime,
                       once: bool = False) -> None:
    """The task's slot ``slot_at`` ran, was missed or skipped; ``once``: its
    once run is done."""
    await conn.execute(_SLOT_HANDLED, name, slot_at, once)


async def prune(conn: asyncpg.Connection, days: int) -> int:
    """Forgets runs (and their entries) older than ``days``; how many."""
    return int((await conn.execute(_PRUNE, days)).split()[-1])
