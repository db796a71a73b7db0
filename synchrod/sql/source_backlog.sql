-- Backlog of a source: its eligible calls not yet synchronized and the start
-- of the oldest (the sync lag). The same predicates as source_load_batch.sql;
-- the partial index synchrod_couples_pending keeps it proportional to the
-- backlog, not to the history.
--   $1 earliest start_ts   $2 only_finished   $3 only_processed
--   $4 couples without streams allowed
SELECT count(*) AS backlog, min(c.start_ts) AS oldest
  FROM callrec.couples c
 WHERE c.synchronized IS NULL
   AND c.start_ts >= $1::timestamptz
   AND (NOT $2::bool OR c.state = 'FINISHED')
   AND (NOT $3::bool OR c.mixed = 'M')
   AND ($4::bool OR EXISTS (SELECT 1 FROM callrec.cfiles f WHERE f.cplid = c.id))
