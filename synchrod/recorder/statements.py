"""The recorder's SQL that depends on its CallREC version: the batch and
backlog queries, built once per connection from the catalog. The text is in
``recorder/sql/*.sql``; a brace in it is filled only with one of the
fragments below (columns and predicates this version has), never with a
value: every value is a parameter."""
from __future__ import annotations

from ..core.catalog import Catalog
from ..pg import sql

_PENDING = "c.synchronized IS NULL"
# re-sync: marked calls once each past a cursor, plus failed ones due again
_PENDING_OR_RESYNC = ("(c.synchronized IS NULL OR (c.synchronized IN ('S', 'N', 'E') "
                      "AND ((c.start_ts, c.id) > ($8::timestamptz, $9::bigint) "
                      "OR c.id = ANY ($10::bigint[]))))")
# column types whose values may need a cast to text inside ROW() (asyncpg
# decodes no domain inside an anonymous record)
_FILE_CASTS = {"digest": "text", "enc_key_id": "text", "cktype": "text", "props": "text",
               "direction": "text", "start_ts": "timestamptz", "stop_ts": "timestamptz",
               "ckvalue": "bigint"}



def filters(cat: Catalog) -> list[str]:
    """The candidate predicates of SPEC §3.1 ($1-$4), for the columns this version has."""
    out = ["c.start_ts >= $1::timestamptz"]
    if cat.has("couples", "state"):
        out.append("(NOT $2::bool OR c.state = 'FINISHED')")
    if cat.has("couples", "mixed"):
        out.append("(NOT $3::bool OR c.mixed = 'M')")
    out.append("($4::bool OR EXISTS (SELECT 1 FROM callrec.cfiles f WHERE f.cplid = c.id))")
    return out


def load_query(cat: Catalog, couple_columns: tuple[str, ...], file_columns: tuple[str, ...],
               resync: bool, voice_tags: bool) -> str:
    """The batch query (load_batch.sql) for this catalog: its braces filled
    with the fragments the catalog selects, never with a value."""
    file_fields = ", ".join(f"f.{c}::{_FILE_CASTS[c]}" for c in file_columns)
    sgid = "f.sgid" if cat.has("cfiles", "sgid") else "NULL::integer"
    created = "e.created_ts" if cat.has("couple_extdata", "created_ts") else "NULL::timestamptz"
    call_columns = {c: f"k.{c}" if cat.has("calls", c) else "NULL::integer" for c in ("length", "cplcnt")}
    for c in ("start_ts", "stop_ts"):
        call_columns[c] = f"k.{c}" if cat.has("calls", c) else "NULL::timestamptz"
    if not voice_tags:
        tags = "'{}'::record[]"
    else:
        on = ("v.cplid = cand.id" if cat.has("voice_tags", "cplid") else
              "v.cfileid IN (SELECT f.id FROM callrec.cfiles f WHERE f.cplid = cand.id)")
        tags = f"""ARRAY(SELECT ROW(p.phrase_text::text, v.from_time, v.to_time, v.confidence::float8,
                           v.channel::text)
                     FROM callrec.voice_tags v JOIN callrec.speech_phrases p ON p.phraseid = v.phraseid
                    WHERE {on} ORDER BY v.from_time, p.phrase_text)"""
    protected = ", cand.protected" if cat.has("couples", "protected") else ""
    text = sql.load("synchrod.recorder", "load_batch.sql")
    return text.format(
        pending=_PENDING_OR_RESYNC if resync else _PENDING,
        filters="\n       AND ".join(filters(cat)),
        couple_columns=", ".join(f"cand.{c}" for c in couple_columns) + protected,
        call_start=call_columns["start_ts"], call_stop=call_columns["stop_ts"],
        call_length=call_columns["length"], call_cplcnt=call_columns["cplcnt"],
        sgid=sgid, file_fields=(", " + file_fields) if file_fields else "", created=created,
        voice_tags=tags)


def backlog_query(cat: Catalog) -> str:
    """The backlog query (backlog.sql) with the candidate predicates of this catalog."""
    return sql.load("synchrod.recorder", "backlog.sql").format(filters="\n   AND ".join(filters(cat)))
