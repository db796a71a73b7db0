-- Samples for the monitor's charts (replay/samples.py): once a minute, each
-- source's backlog and lag from the daemon that owns it, and each target
-- filesystem's use and storage level from the daemon holding the storage
-- duty. Pruned with the cycle history (monitor.history_days); the index on
-- `at` serves both the prune and the charts' window, so neither cost grows
-- with the history kept.
CREATE TABLE synchrod.source_samples (
    at           timestamptz      NOT NULL,
    source       text             NOT NULL,
    daemon       text             NOT NULL,
    backlog      integer          NOT NULL,
    lag_seconds  double precision NOT NULL
);
CREATE INDEX source_samples_at ON synchrod.source_samples (at);

CREATE TABLE synchrod.filesystem_samples (
    at           timestamptz NOT NULL,
    filesystem   text        NOT NULL,   -- its mount point
    daemon       text        NOT NULL,
    used_ratio   real        NOT NULL CHECK (used_ratio >= 0),
    level        smallint    CHECK (level BETWEEN 0 AND 3)   -- NULL: space management off
);
CREATE INDEX filesystem_samples_at ON synchrod.filesystem_samples (at);
