-- Keeps idle cycles cheap whatever the history size: only unsynchronized
-- couples are in it. Created CONCURRENTLY so recording is never blocked.
CREATE INDEX CONCURRENTLY IF NOT EXISTS synchrod_couples_pending
    ON callrec.couples (start_ts, id) WHERE synchronized IS NULL
