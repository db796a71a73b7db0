-- Bulk delete jobs (SPEC §9, MediaSense deleteSessions): asked for through
-- the API, carried out by the daemon holding the "deletions" duty in
-- batches; each batch's progress commits with the batch, so a job resumes
-- where it stopped after a crash or a restart.
CREATE TABLE synchrod.deletion_jobs (
    id                    bigserial   PRIMARY KEY,
    state                 text        NOT NULL DEFAULT 'queued'
                          CHECK (state IN ('queued', 'running', 'done', 'cancelled', 'failed')),
    sids                  text[],                -- a list of sids, or (NULL) the filter below
    before                timestamptz,           -- filter: couples started before (required for a filter)
    after                 timestamptz,           -- filter: started at or after
    source                text,                  -- filter: delivered from this source
    metadata              boolean     NOT NULL,  -- delete the couples too, not only their media
    comment               text,
    requested_by          text        NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    started_at            timestamptz,
    finished_at           timestamptz,
    cancel_requested      boolean     NOT NULL DEFAULT false,
    operations_completed  integer     NOT NULL DEFAULT 0,
    operations_remaining  integer     NOT NULL,
    skipped_protected     integer     NOT NULL DEFAULT 0,
    not_found             integer     NOT NULL DEFAULT 0,
    files_freed           bigint      NOT NULL DEFAULT 0,
    bytes_freed           bigint      NOT NULL DEFAULT 0,
    position_ts           timestamptz,           -- filter: keyset position reached (start_ts, id)
    position_id           bigint      NOT NULL DEFAULT 0,   -- or the number of sids done
    daemon                text,                  -- the daemon carrying it out
    message               text,
    CHECK (sids IS NOT NULL OR before IS NOT NULL)
);
CREATE INDEX deletion_jobs_open ON synchrod.deletion_jobs (id) WHERE state IN ('queued', 'running');

-- which job removed a call (NULL: automatic pruning or the CLI)
ALTER TABLE synchrod.deletions ADD COLUMN job_id bigint;
