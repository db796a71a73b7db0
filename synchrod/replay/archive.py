"""Archive export in the replay database (SPEC §10): the files a run takes
(one query per page, with every sidecar field), the manifest that makes
runs idempotent, runs and their per-file entries, the slots handled per
task, temporary files in flight, and the CallREC archive marks."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import asyncpg

from ..core import clock
from ..core.catalog import Catalog

#: voice tags on the couple (current CallREC) or on the cfile (older)
_VOICE_TAGS = """(SELECT jsonb_agg(jsonb_build_object('phrase', p.phrase_text, 'from_ms', v.from_time,
           'to_ms', v.to_time, 'confidence', v.confidence, 'channel', v.channel)
           ORDER BY v.from_time, v.voice_tagid)
      FROM callrec.voice_tags v JOIN callrec.speech_phrases p ON p.phraseid = v.phraseid
     WHERE v.{key} = {value})"""

#: a page of a run's files: couples started in [$1, $2) and stopped before
#: $3, not pruned, from the sources $4 (NULL: any), files not archived by the
#: task $5, past the keyset position ($6, $7, $8) = (start_ts, couple id, cfile id)
_CANDIDATES = """
SELECT f.id AS cfile_id, f.cftype::text AS cftype, f.cfsize, f.cfpath::text AS cfpath,
       c.id AS couple_id, c.callid AS call_id, c.sid::text AS sid, c.start_ts, c.stop_ts, c.length,
       c.callingnr::text AS callingnr, c.originalcallednr::text AS originalcallednr,
       c.finalcallednr::text AS finalcallednr, c.callingpartyname::text AS callingpartyname,
       c.calledpartyname::text AS calledpartyname, c.problemstatus::text AS problemstatus,
       c.state::text AS state, c.description::text AS description,
       coalesce(c.protected, false) AS protected,
       (SELECT s.source FROM synchrod.synced s WHERE s.target_cplid = c.id
         ORDER BY s.synced_at LIMIT 1) AS source,
       (SELECT jsonb_object_agg(x.key, x.vals) FROM (
           SELECT e.key::text AS key, jsonb_agg(e.value::text ORDER BY e.value) AS vals
             FROM callrec.couple_extdata e WHERE e.cplid = c.id GROUP BY e.key) x) AS extdata,
       {voice_tags} AS voice_tags
  FROM callrec.couples c
  JOIN callrec.cfiles f ON f.cplid = c.id
 WHERE c.start_ts >= $1 AND c.start_ts < $2 AND c.stop_ts < $3
   AND c.deleted IS DISTINCT FROM 'D'
   AND ($4::text[] IS NULL OR EXISTS (SELECT 1 FROM synchrod.synced s
                                       WHERE s.target_cplid = c.id AND s.source = ANY($4)))
   AND NOT EXISTS (SELECT 1 FROM synchrod.archive_files a WHERE a.task = $5 AND a.cfile_id = f.id)
   AND (c.start_ts, c.id, f.id) > ($6::timestamptz, $7::bigint, $8::bigint)
 ORDER BY c.start_ts, c.id, f.id
 LIMIT $9
"""


def candidates_statement(catalog: Catalog) -> str:
    """The page statement for this replay database's voice tags (on couples,
    on cfiles, or none)."""
    if catalog.has("voice_tags", "cplid"):
        tags = _VOICE_TAGS.format(key="cplid", value="c.id")
    elif catalog.has("voice_tags", "cfileid"):
        tags = _VOICE_TAGS.format(key="cfileid", value="f.id")
    else:
        tags = "NULL::jsonb"
    return _CANDIDATES.format(voice_tags=tags)


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


async def candidates(conn: asyncpg.Connection, statement: str, *, start: dt.datetime,
                     end: dt.datetime, stopped_before: dt.datetime, sources: Sequence[str] | None,
                     task: str, after: tuple, limit: int) -> list[dict]:
    """The next page of files to archive, oldest couple first, each a dict of every
    sidecar field (extdata and voice tags decoded)."""
    rows = await conn.fetch(statement, start, end, stopped_before,
                            list(sources) if sources else None, task, *after, limit)
    out = []
    for r in rows:
        d = dict(r)
        d["extdata"], d["voice_tags"] = _json(d["extdata"]), _json(d["voice_tags"])
        out.append(d)
    return out


START = (clock.BEGINNING, 0, 0)

_RECORD = """
INSERT INTO synchrod.archive_files (task, cfile_id, cplid, sid, destination, sha256, bytes, run_id)
SELECT $1, u.cfile_id, u.cplid, u.sid, u.destination, u.sha256, u.bytes, $2
  FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::bigint[])
       AS u(cfile_id, cplid, sid, destination, sha256, bytes)
ON CONFLICT (task, cfile_id) DO NOTHING
"""
_ENTRIES = """
INSERT INTO synchrod.archive_entries (run_id, kind, destination, replay_path, sid, result, message)
SELECT $1, u.kind, u.destination, u.replay_path, u.sid, u.result, u.message
  FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
       AS u(kind, destination, replay_path, sid, result, message)
"""
_COUNT = """
UPDATE synchrod.archive_runs SET files_ok = files_ok + $2, files_failed = files_failed + $3,
       bytes = bytes + $4 WHERE id = $1
"""


async def record(conn: asyncpg.Connection, task: str, run_id: int, archived: Sequence[dict],
                 entries: Sequence[tuple], failed: int) -> None:
    """Commits a batch: the files archived (now durable) in the manifest,
    every entry of the batch, the run's counts. ``archived``: dicts with
    cfile_id, cplid, sid, destination, sha256, bytes; ``entries``: (kind,
    destination, replay_path, sid, result, message)."""
    async with conn.transaction():
        if archived:
            await conn.execute(_RECORD, task, run_id, *(
                [a[k] for a in archived]
                for k in ("cfile_id", "cplid", "sid", "destination", "sha256", "bytes")))
        if entries:
            await conn.execute(_ENTRIES, run_id, *([e[i] for e in entries] for i in range(6)))
        await conn.execute(_COUNT, run_id, len(archived), failed,
                           sum(a["bytes"] for a in archived))


#: couples of these ids whose every file the task archived; the first task to do so names the folder
_MARK_ARCHIVED = """
UPDATE callrec.couples c SET archived = 'A', b_method = 'DISK_A', b_location = $3
 WHERE c.id = ANY($1::bigint[]) AND c.archived IS DISTINCT FROM 'A'
   AND NOT EXISTS (SELECT 1 FROM callrec.cfiles f WHERE f.cplid = c.id
                    AND NOT EXISTS (SELECT 1 FROM synchrod.archive_files a
                                     WHERE a.task = $2 AND a.cfile_id = f.id))
"""


def marks_archive(catalog: Catalog) -> bool:
    """Whether the replay schema has CallREC's archive columns on couples."""
    return all(catalog.has("couples", c) for c in ("archived", "b_method", "b_location"))


async def mark_archived(conn: asyncpg.Connection, couple_ids: Sequence[int], task: str,
                        folder: str) -> int:
    """``archived = 'A'``, ``b_method = 'DISK_A'``, ``b_location = folder`` on
    the couples whose every file ``task`` archived; how many changed."""
    if not couple_ids:
        return 0
    status = await conn.execute(_MARK_ARCHIVED, sorted(set(couple_ids)), task, folder[:255])
    return int(status.split()[-1])


_PENDING_ADD = """
INSERT INTO synchrod.archive_pending (path, task) SELECT unnest($1::text[]), $2
ON CONFLICT (path) DO NOTHING
"""
_PENDING_OF = "SELECT path FROM synchrod.archive_pending WHERE task = $1"
_PENDING_FORGET = "DELETE FROM synchrod.archive_pending WHERE path = ANY($1::text[])"


async def pending_add(conn: asyncpg.Connection, task: str, paths: Sequence[str]) -> None:
    """Journals the destinations about to be written (their temporary siblings may be left)."""
    await conn.execute(_PENDING_ADD, list(paths), task)


async def pending_of(conn: asyncpg.Connection, task: str) -> list[str]:
    """Destinations a run of the task started writing and never recorded."""
    return [r["path"] for r in await conn.fetch(_PENDING_OF, task)]


async def pending_forget(conn: asyncpg.Connection, paths: Sequence[str]) -> None:
    """Forgets journaled destinations (recorded, or cleaned up)."""
    await conn.execute(_PENDING_FORGET, list(paths))
