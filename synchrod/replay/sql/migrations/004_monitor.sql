-- The monitor: failed cycles in the history, pruning by age, sources
-- disabled through the API and tokens revoked by a logout (both kept for
-- every daemon and across restarts).
ALTER TABLE synchrod.runs
    ADD COLUMN state text NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'down', 'error'));
CREATE INDEX runs_finished_at ON synchrod.runs (finished_at);

CREATE TABLE synchrod.source_control (
    source       text        PRIMARY KEY,
    disabled_by  text        NOT NULL,
    disabled_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE synchrod.revoked_tokens (
    jti         text        PRIMARY KEY,
    expires_at  timestamptz NOT NULL
);
