-- The daemons working this replay database, as they last published
-- themselves: what `synchrod status` shows, from any node. A row is live
-- while its owner connection (backend_pid) is; a killed daemon's row is
-- ignored at once and deleted by the next daemon that starts.
CREATE TABLE synchrod.daemons (
    name              text        PRIMARY KEY,
    host              text        NOT NULL,
    pid               integer     NOT NULL,
    backend_pid       integer     NOT NULL,
    version           text        NOT NULL,
    config_path       text,
    config_loaded_at  timestamptz,
    config_error      text,
    config_error_at   timestamptz,
    state             text        NOT NULL,
    sources           jsonb       NOT NULL DEFAULT '{}',
    started_at        timestamptz NOT NULL,
    seen_at           timestamptz NOT NULL DEFAULT now()
);
