-- Archive export tasks (SPEC §10).

-- What the replay database remembers of each task across restarts and
-- daemons: the definition last seen and the last slot handled (ran, missed
-- or skipped), so slots are neither run twice nor backfilled.
CREATE TABLE synchrod.archive_tasks (
    name          text        PRIMARY KEY,
    definition    text        NOT NULL,   -- schedule, at, weekday, day, timezone
    last_slot_at  timestamptz,            -- the last slot handled
    once_done     boolean     NOT NULL DEFAULT false,   -- a once task of this definition has run
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE synchrod.archive_runs (
    id            bigserial   PRIMARY KEY,
    task          text        NOT NULL,
    slot_at       timestamptz,            -- the slot it is for (NULL: run by hand)
    state         text        NOT NULL
                  CHECK (state IN ('running', 'completed', 'errors', 'failed', 'missed', 'skipped')),
    message       text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    files_ok      integer     NOT NULL DEFAULT 0,
    files_failed  integer     NOT NULL DEFAULT 0,
    bytes         bigint      NOT NULL DEFAULT 0,
    daemon        text,
    requested_by  text,
    UNIQUE (task, slot_at)                -- each slot runs once, whichever daemon gets it
);
CREATE INDEX archive_runs_task ON synchrod.archive_runs (task, id DESC);
CREATE INDEX archive_runs_started ON synchrod.archive_runs (started_at);

-- The manifest: a target file archived by a task is never copied by it again.
CREATE TABLE synchrod.archive_files (
    task          text        NOT NULL,
    cfile_id      bigint      NOT NULL,
    cplid         bigint      NOT NULL,
    sid           text        NOT NULL,
    destination   text        NOT NULL,
    sha256        text        NOT NULL,
    bytes         bigint      NOT NULL,
    run_id        bigint      NOT NULL,
    archived_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task, cfile_id)
);
CREATE INDEX archive_files_cplid ON synchrod.archive_files (cplid);

-- Every file's result in a run, media and sidecar alike.
CREATE TABLE synchrod.archive_entries (
    id            bigserial   PRIMARY KEY,
    run_id        bigint      NOT NULL REFERENCES synchrod.archive_runs ON DELETE CASCADE,
    kind          text        NOT NULL CHECK (kind IN ('media', 'sidecar')),
    destination   text,
    replay_path   text,
    sid           text,
    result        text        NOT NULL CHECK (result IN ('archived', 'failed')),
    message       text
);
CREATE INDEX archive_entries_run ON synchrod.archive_entries (run_id, id);

-- Temporary files being written, so a run killed mid-way is cleaned up by the next.
CREATE TABLE synchrod.archive_pending (
    path          text        PRIMARY KEY,
    task          text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
