-- synchrod's own bookkeeping in the replay database.

-- Every source couple synchrod has delivered, with the mark it earned.
-- Lets a retry after "target committed, source not yet marked" re-apply the
-- same mark, tells where each target couple came from, and (through
-- source_callid) puts couples of one source call into one target call even
-- when they arrive in different batches.
CREATE TABLE synchrod.synced (
    source         text        NOT NULL,
    source_cplid   bigint      NOT NULL,
    source_callid  bigint,
    sid            text        NOT NULL,
    target_cplid   bigint      NOT NULL REFERENCES callrec.couples (id) ON DELETE CASCADE,
    mark           char(1)     NOT NULL CHECK (mark IN ('S', 'N')),
    synced_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_cplid)
);
CREATE INDEX synced_target_cplid ON synchrod.synced (target_cplid);
CREATE INDEX synced_source_call ON synchrod.synced (source, source_callid);

-- Failed calls: attempts and back-off.
CREATE TABLE synchrod.attempts (
    source        text        NOT NULL,
    source_cplid  bigint      NOT NULL,
    sid           text        NOT NULL,
    attempts      integer     NOT NULL,
    next_try_at   timestamptz NOT NULL,
    last_reason   text        NOT NULL,
    last_detail   text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_cplid)
);
CREATE INDEX attempts_next_try ON synchrod.attempts (source, next_try_at);

-- Intent journal: a media file written before its rows commit. What is left
-- here at the start of a cycle and unreferenced is an orphan of a crash.
CREATE TABLE synchrod.pending_files (
    path        text        PRIMARY KEY,
    source      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Files no committed row uses any more, removed after the commit.
CREATE TABLE synchrod.pending_unlink (
    path        text        PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Per-source cursor for synchronize_already_synchronized.
CREATE TABLE synchrod.source_state (
    source            text PRIMARY KEY,
    resync_cursor_ts  timestamptz,
    resync_cursor_id  bigint
);

-- Cycle history with the outcome of every call.
CREATE TABLE synchrod.runs (
    id            bigserial   PRIMARY KEY,
    source        text        NOT NULL,
    daemon        text        NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    taken         integer     NOT NULL,
    synchronized  integer     NOT NULL,
    not_used      integer     NOT NULL,
    erroneous     integer     NOT NULL,
    failed        integer     NOT NULL,
    skipped       integer     NOT NULL,
    files         integer     NOT NULL,
    bytes         bigint      NOT NULL,
    error         text
);
CREATE INDEX runs_source_id ON synchrod.runs (source, id DESC);

-- No foreign key to runs: history is appended in bulk and pruned by run id.
CREATE TABLE synchrod.run_calls (
    run_id        bigint NOT NULL,
    source_cplid  bigint NOT NULL,
    sid           text   NOT NULL,
    outcome       text   NOT NULL,
    reason        text,
    detail        text,
    PRIMARY KEY (run_id, source_cplid)
);
