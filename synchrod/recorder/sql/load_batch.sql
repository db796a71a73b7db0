-- One round trip loads a whole batch: candidates with their call, the sids
-- of the call's other couples, files, extdata and voice tags. The placeholders in braces
-- are fixed fragments chosen from the recorder's catalog (columns this
-- CallREC version has; see synchrod/recorder/statements.py); every value is a parameter.
--   $1 earliest start_ts   $2 only_finished   $3 only_processed
--   $4 couples without streams allowed   $5/$6 (id, sid) in back-off   $7 limit
--   $8/$9 resync cursor (start_ts, id), $10 failed ids due again: only with
--   synchronize_already_synchronized
-- Values inside ROW() are cast to base types: asyncpg decodes no domain
-- inside an anonymous record.
WITH cand AS (
    SELECT c.*
      FROM callrec.couples c
     WHERE {pending}
       AND {filters}
       AND (c.id, c.sid::text) NOT IN (SELECT * FROM unnest($5::bigint[], $6::text[]))
     ORDER BY c.start_ts, c.id
     LIMIT $7
)
SELECT cand.id, cand.callid, cand.synchronized::text AS synchronized, {couple_columns},
       {call_start} AS call_start_ts, {call_stop} AS call_stop_ts,
       {call_length} AS call_length, {call_cplcnt} AS call_cplcnt,
       ARRAY(SELECT ROW(s.sid::text) FROM callrec.couples s
              WHERE s.callid = cand.callid AND s.id <> cand.id ORDER BY s.id) AS call_sids,
       ARRAY(SELECT ROW(f.id, {sgid}, f.cftype::text, f.cfsize, f.cfpath::text{file_fields})
               FROM callrec.cfiles f WHERE f.cplid = cand.id ORDER BY f.id) AS files,
       ARRAY(SELECT ROW(e.key::text, e.value::text, {created})
               FROM callrec.couple_extdata e WHERE e.cplid = cand.id
              ORDER BY e.key, e.value) AS extdata,
       {voice_tags} AS voice_tags
  FROM cand
  LEFT JOIN callrec.calls k ON k.id = cand.callid
 ORDER BY cand.start_ts, cand.id
