-- `synchrod retry`: the operator's rescue after fixing a fault. Calls marked
-- E become candidates again (all of the source's, or only the given sids).
UPDATE callrec.couples
   SET synchronized = NULL
 WHERE synchronized = 'E'
   AND ($1::text[] IS NULL OR sid = ANY($1::text[]))
