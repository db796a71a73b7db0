-- One round trip loads a whole batch: candidates with their call, files,
-- extdata and voice tags. {pending} is one of two fixed predicates (see
-- synchrod/recorder.py); every value is a parameter.
--   $1 earliest start_ts   $2 only_finished   $3 only_processed
--   $4 couples without streams allowed   $5 ids in back-off   $6 limit
--   $7/$8 resync cursor (start_ts, id), only with synchronize_already_synchronized
WITH cand AS (
    SELECT c.*
      FROM callrec.couples c
     WHERE {pending}
       AND c.start_ts >= $1::timestamptz
       AND (NOT $2::bool OR c.state = 'FINISHED')
       AND (NOT $3::bool OR c.mixed = 'M')
       AND ($4::bool OR EXISTS (SELECT 1 FROM callrec.cfiles f WHERE f.cplid = c.id))
       AND c.id <> ALL ($5::bigint[])
     ORDER BY c.start_ts, c.id
     LIMIT $6
)
SELECT cand.id, cand.callid, cand.start_ts, cand.stop_ts, cand.length, cand.callingnr,
       cand.originalcallednr, cand.finalcallednr, cand.callingpartyname, cand.calledpartyname,
       cand.problemstatus, cand.description, cand.protected, cand.sid, cand.synchronized,
       cand.mixed, cand.state,
       k.start_ts AS call_start_ts, k.stop_ts AS call_stop_ts, k.length AS call_length,
       ARRAY(SELECT ROW(f.id, f.cftype, f.cfsize, f.cfpath, f.digest, f.start_ts, f.stop_ts)
               FROM callrec.cfiles f WHERE f.cplid = cand.id ORDER BY f.id) AS files,
       ARRAY(SELECT ROW(e.key, e.value)
               FROM callrec.couple_extdata e WHERE e.cplid = cand.id) AS extdata,
       ARRAY(SELECT ROW(v.tag, v.position_ms)
               FROM callrec.voice_tags v WHERE v.cplid = cand.id) AS voice_tags
  FROM cand
  LEFT JOIN callrec.calls k ON k.id = cand.callid
 ORDER BY cand.start_ts, cand.id
