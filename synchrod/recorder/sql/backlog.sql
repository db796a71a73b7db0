-- Backlog of a source: its eligible calls not yet synchronized and the start
-- of the oldest (the sync lag). The same predicates as load_batch.sql
-- (the filters placeholder, from the recorder's catalog); the partial index
-- synchrod_couples_pending keeps it proportional to the backlog, not to the
-- history.
--   $1 earliest start_ts   $2 only_finished   $3 only_processed
--   $4 couples without streams allowed
SELECT count(*) AS backlog, min(c.start_ts) AS oldest
  FROM callrec.couples c
 WHERE c.synchronized IS NULL
   AND {filters}
