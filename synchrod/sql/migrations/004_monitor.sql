-- The monitor: failed cycles in the history, pruning by age, and sources
-- disabled through the API (kept for every daemon and across restarts).
ALTER TABLE synchrod.runs
    ADD COLUMN state text NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'down', 'error'));
CREATE INDEX runs_finished_at ON synchrod.runs (finished_at);

CREATE TABLE synchrod.source_control (
    source       text        PRIMARY KEY,
    disabled_by  text        NOT NULL,
    disabled_at  timestamptz NOT NULL DEFAULT now()
);
