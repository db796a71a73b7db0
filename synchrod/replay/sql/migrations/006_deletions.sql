-- Space management (SPEC §9): every pruned or deleted call is audited, and
-- its sid remembered so that no recorder copies it back.
CREATE TABLE synchrod.deletions (
    id            bigserial   PRIMARY KEY,
    sid           text        NOT NULL,
    target_cplid  bigint      NOT NULL,      -- the couple's id when it was pruned (it may be gone)
    deleted_at    timestamptz NOT NULL DEFAULT now(),
    reason        text        NOT NULL CHECK (reason IN ('age', 'critical', 'emergency', 'api', 'cli')),
    requested_by  text,
    files         integer     NOT NULL,
    bytes         bigint      NOT NULL,
    metadata      boolean     NOT NULL,      -- true: the couple itself was deleted, not only its media
    comment       text
);
CREATE INDEX deletions_deleted_at ON synchrod.deletions (deleted_at);
CREATE INDEX deletions_sid ON synchrod.deletions (sid);

CREATE TABLE synchrod.tombstones (
    sid         text        PRIMARY KEY,
    deleted_at  timestamptz NOT NULL DEFAULT now()
);
