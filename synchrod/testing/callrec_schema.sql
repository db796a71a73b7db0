-- The CallREC-style schema recorders and the replay server hold (SPEC §2),
-- as synchrod's tests, demo and benchmark create it.
CREATE SCHEMA IF NOT EXISTS callrec;

CREATE TABLE callrec.calls (
    id        serial PRIMARY KEY,
    start_ts  timestamptz,
    stop_ts   timestamptz,
    length    integer
);

CREATE TABLE callrec.couples (
    id                serial PRIMARY KEY,
    callid            integer REFERENCES callrec.calls (id) ON DELETE CASCADE,
    start_ts          timestamptz NOT NULL,
    stop_ts           timestamptz NOT NULL,
    length            integer,
    callingnr         text,
    originalcallednr  text,
    finalcallednr     text,
    callingpartyname  text,
    calledpartyname   text,
    problemstatus     text DEFAULT 'NO_PROBLEM',
    description       text,
    protected         boolean DEFAULT false,
    sid               text NOT NULL UNIQUE,
    synchronized      char(1) CHECK (synchronized IN ('S', 'N', 'E', 'F')),
    mixed             char(1) CHECK (mixed IN ('M', 'F')),
    state             text CHECK (state IN ('EXT_DATA_SAVED', 'DECODED', 'FINISHED')),
    cfcnt             integer DEFAULT 0
);
CREATE INDEX couples_start_ts ON callrec.couples (start_ts);
CREATE INDEX couples_callid ON callrec.couples (callid);

CREATE TABLE callrec.cfiles (
    id        serial PRIMARY KEY,
    cplid     integer NOT NULL REFERENCES callrec.couples (id) ON DELETE CASCADE,
    cftype    text NOT NULL CHECK (cftype IN ('AUDIO', 'VIDEO', 'RECD', 'IMAGE', 'MAG', 'ARCHIVE', 'INDEX')),
    cfsize    bigint,
    cfpath    text NOT NULL,
    digest    text,
    start_ts  timestamptz,
    stop_ts   timestamptz
);
CREATE INDEX cfiles_cplid ON callrec.cfiles (cplid);

CREATE TABLE callrec.couple_extdata (
    cplid  integer NOT NULL REFERENCES callrec.couples (id) ON DELETE CASCADE,
    key    text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (cplid, key, value)
);

CREATE TABLE callrec.voice_tags (
    cplid        integer NOT NULL REFERENCES callrec.couples (id) ON DELETE CASCADE,
    tag          text NOT NULL,
    position_ms  integer NOT NULL,
    PRIMARY KEY (cplid, tag, position_ms)
);

CREATE TABLE callrec.speech_tags (
    name         text PRIMARY KEY,
    description  text
);

CREATE TABLE callrec.speech_phrases (
    tag     text NOT NULL REFERENCES callrec.speech_tags (name) ON DELETE CASCADE,
    phrase  text NOT NULL,
    PRIMARY KEY (tag, phrase)
);
