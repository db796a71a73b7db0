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
from ..sql import ident


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
            sets.append(f"protected = (coalesce(c.protected, false) OR coalesce(u.protected, false))")
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
