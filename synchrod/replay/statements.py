"""The batch statements of one source, built from both catalogs.

A delivery writes the columns both databases have, leaves to the target's
triggers the columns they keep (``cfcnt``, ``cftypes``, ``realcplcnt``, the
call's times) and takes new ids from CallREC's ``get_next_*id()`` functions
(else the column default). What that means for this pair of databases is
decided once, here, when the source connects; the writer only fills in
values. Identifiers come from the catalogs and are quoted; values are always
parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.catalog import Catalog, copied_couple_columns, copied_file_columns
from ..pg.sql import ident


@dataclass(frozen=True)
class BatchStatements:
    call_columns: tuple[str, ...]      # COPY into callrec.calls
    couple_columns: tuple[str, ...]    # SourceCouple columns copied (order of COPY after id, callid)
    couple_copy: tuple[str, ...]       # COPY into callrec.couples
    file_columns: tuple[str, ...]      # CFile columns copied
    file_copy: tuple[str, ...]         # COPY into callrec.cfiles
    synchrod_calls: frozenset[str]     # calls columns no trigger keeps: synchrod writes them
    synchrod_couples: frozenset[str]   # cfcnt / cftypes where no trigger keeps them
    has_protected: bool
    has_created_ts: bool               # couple_extdata.created_ts on both sides
    alloc: dict[str, str]              # "calls.id" ... -> SELECT giving $1 new ids
    update_couples: str                # a replacement: columns and sticky protection
    protect: str                       # a merge of a protected source copy
    join_calls: str                    # couples added to existing target calls
    insert_extdata: str
    insert_voice_tags: str | None

    @classmethod
    def build(cls, source: Catalog, target: Catalog, voice_tags: bool) -> "BatchStatements":
        """The statements of one source and target pair (no I/O): they name only columns
        both catalogs have and leave trigger-kept ones alone; ``insert_voice_tags`` is None
        unless ``voice_tags``."""
        couple_columns = copied_couple_columns(source, target)
        file_columns = copied_file_columns(source, target)
        has_protected = target.has("couples", "protected")
        synchrod_couples = frozenset(c for c in ("cfcnt", "cftypes")
                                     if target.has("couples", c) and not target.kept("couples", c))
        synchrod_calls = frozenset(c for c in ("start_ts", "stop_ts", "length", "realcplcnt")
                                   if target.has("calls", c) and not target.kept("calls", c))
        call_columns = ("id",) + tuple(c for c in ("cplcnt",) if target.has("calls", c)) + \
            tuple(sorted(synchrod_calls))
        couple_copy = ("id", "callid") + couple_columns + (("protected",) if has_protected else ()) + \
            tuple(sorted(synchrod_couples))
        alloc = {}
        for table, column in (("calls", "id"), ("couples", "id"), ("cfiles", "id"), ("cfiles", "sgid")):
            source_sql = target.id_source(table, column)
            if target.has(table, column) and source_sql is not None:
                alloc[f"{table}.{column}"] = f"SELECT {source_sql} FROM generate_series(1, $1)"
        file_copy = tuple(c for c in ("id", "sgid") if f"cfiles.{c}" in alloc) + \
            ("cplid", "cftype", "cfsize", "cfpath") + file_columns
        types = target.columns("couples")
        update_cols = couple_columns + tuple(sorted(synchrod_couples))
        arrays = ", ".join(f"${i + 2}::{types[c].type}[]" for i, c in enumerate(update_cols))
        names = ", ".join(ident(c) for c in update_cols)
        sets = [f"{ident(c)} = u.{ident(c)}" for c in update_cols]
        n = len(update_cols) + 2
        if has_protected:
            # sticky: true on either side stays true (SPEC §2)
            sets.append("protected = (coalesce(c.protected, false) OR coalesce(u.protected, false))")
            arrays += f", ${n}::boolean[]"
            names += ", protected"
        update_couples = (f"UPDATE callrec.couples c SET {', '.join(sets)}"
                          f" FROM unnest($1::bigint[], {arrays}) AS u(id, {names}) WHERE c.id = u.id")
        protect = ("UPDATE callrec.couples SET protected = true"
                   " WHERE id = ANY($1::bigint[]) AND protected IS NOT TRUE") if has_protected else ""
        join_sets = []
        if target.has("calls", "cplcnt"):
            join_sets.append("cplcnt = greatest(coalesce(k.cplcnt, 0), coalesce(u.cplcnt, 0))")
        if "start_ts" in synchrod_calls:
            join_sets.append("start_ts = least(k.start_ts, u.start_ts)")
        if "stop_ts" in synchrod_calls:
            join_sets.append("stop_ts = greatest(k.stop_ts, u.stop_ts)")
        if "length" in synchrod_calls:
            join_sets.append("length = coalesce(extract(epoch FROM greatest(k.stop_ts, u.stop_ts)"
                             " - least(k.start_ts, u.start_ts))::integer, 0)")
        if "realcplcnt" in synchrod_calls:
            join_sets.append("realcplcnt = coalesce(k.realcplcnt, 0) + u.added")
        join_calls = (f"UPDATE callrec.calls k SET {', '.join(join_sets)}"
                      " FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::timestamptz[], $5::int[])"
                      " AS u(id, cplcnt, start_ts, stop_ts, added) WHERE k.id = u.id") if join_sets else ""
        has_created_ts = source.has("couple_extdata", "created_ts") and \
            target.has("couple_extdata", "created_ts")
        insert_extdata = (
            "INSERT INTO callrec.couple_extdata (cplid, key, value"
            + (", created_ts" if has_created_ts else "") + ")"
            " SELECT u.cplid, u.key, u.value" + (", coalesce(u.created_ts, now())" if has_created_ts else "")
            + " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[])"
            " AS u(cplid, key, value, created_ts) ON CONFLICT DO NOTHING")
        insert_voice_tags = _VOICE_TAGS if voice_tags else None
        return cls(call_columns, couple_columns, couple_copy, file_columns, file_copy,
                   synchrod_calls, synchrod_couples, has_protected, has_created_ts, alloc,
                   update_couples, protect, join_calls, insert_extdata, insert_voice_tags)


# Voice tags are mapped to the replay database's phrase of the same text; a
# tag already there is not added twice. Returns the phrases the target lacks
# (reported, never invented).
_VOICE_TAGS = """
WITH u AS (
    SELECT DISTINCT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::int[], $5::float8[], $6::text[])
        AS u(cplid, phrase, from_time, to_time, confidence, channel)
), mapped AS (
    SELECT u.*, p.phraseid FROM u JOIN callrec.speech_phrases p ON p.phrase_text = u.phrase
), ins AS (
    INSERT INTO callrec.voice_tags (cplid, phraseid, from_time, to_time, confidence, channel)
    SELECT m.cplid, m.phraseid, m.from_time, m.to_time, m.confidence, m.channel FROM mapped m
     WHERE NOT EXISTS (SELECT 1 FROM callrec.voice_tags v
                        WHERE v.cplid = m.cplid AND v.phraseid = m.phraseid
                          AND v.from_time = m.from_time AND v.to_time = m.to_time
                          AND v.channel IS NOT DISTINCT FROM m.channel)
)
SELECT DISTINCT phrase FROM u WHERE NOT EXISTS (SELECT 1 FROM mapped m WHERE m.phrase = u.phrase)
"""


# --- the batch's fixed statements (synchrod's own tables and the CallREC rows) ---

LOCK_SIDS = """
SELECT count(pg_advisory_xact_lock(k))
  FROM (SELECT DISTINCT hashtextextended(s, 1414) AS k FROM unnest($1::text[]) s ORDER BY 1) q
"""
RUN_CALL_COLUMNS = ("run_id", "source_cplid", "sid", "outcome", "reason", "detail")
DELETE_FILES = "DELETE FROM callrec.cfiles WHERE cplid = ANY($1::bigint[]) RETURNING cfpath::text"
UPSERT_SYNCED = """
INSERT INTO synchrod.synced (source, source_cplid, source_callid, sid, target_cplid, mark)
SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::text[])
ON CONFLICT (source, source_cplid) DO UPDATE
   SET source_callid = EXCLUDED.source_callid, sid = EXCLUDED.sid,
       target_cplid = EXCLUDED.target_cplid, mark = EXCLUDED.mark, synced_at = now()
"""
CLEAR_ATTEMPTS = "DELETE FROM synchrod.attempts WHERE source = $1 AND source_cplid = ANY($2::bigint[])"
UPSERT_ATTEMPTS = """
INSERT INTO synchrod.attempts (source, source_cplid, sid, attempts, next_try_at, last_reason, last_detail)
SELECT $1, u.id, u.sid, u.n,
       -- a call marked E waits for the operator, not for a clock
       coalesce(now() + make_interval(secs => u.delay), 'infinity'), u.reason, u.detail
  FROM unnest($2::bigint[], $3::text[], $4::int[], $5::int[], $6::text[], $7::text[])
       AS u(id, sid, n, delay, reason, detail)
ON CONFLICT (source, source_cplid) DO UPDATE
   SET sid = EXCLUDED.sid, attempts = EXCLUDED.attempts, next_try_at = EXCLUDED.next_try_at,
       last_reason = EXCLUDED.last_reason, last_detail = EXCLUDED.last_detail, updated_at = now()
"""
SCHEDULE_UNLINK = """
INSERT INTO synchrod.pending_unlink (path) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING
"""
INSERT_RUN = """
INSERT INTO synchrod.runs (source, daemon, started_at, finished_at, taken, synchronized, not_used,
       erroneous, failed, skipped, files, bytes, error)
VALUES ($1, $2, $3, now(), $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id
"""
ADD_TO_RUN = """
UPDATE synchrod.runs
   SET finished_at = now(), taken = taken + $2, synchronized = synchronized + $3,
       not_used = not_used + $4, erroneous = erroneous + $5, failed = failed + $6,
       skipped = skipped + $7, files = files + $8, bytes = bytes + $9
 WHERE id = $1
"""
UPSERT_CURSOR = """
INSERT INTO synchrod.source_state (source, resync_cursor_ts, resync_cursor_id) VALUES ($1, $2, $3)
ON CONFLICT (source) DO UPDATE
   SET resync_cursor_ts = EXCLUDED.resync_cursor_ts, resync_cursor_id = EXCLUDED.resync_cursor_id
"""
