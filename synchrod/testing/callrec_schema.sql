-- The CallREC `callrec` schema of the recording suite, reconstructed for
-- synchrod's tests, demo and benchmark from its public DDL (tables/,
-- domains/, functions/, triggers/ and the later migration scripts). Written
-- for synchrod, not copied: every table, column, type, domain, constraint,
-- id function and trigger a replicator meets, with the behaviour the public
-- DDL gives it.
--
-- Two files, as installations evolved: this one is an older version (no
-- DECODED state, no digest or enc_key_id, no agent/domain/direction columns,
-- no change tracking, voice tags on cfiles, no PV file types);
-- callrec_schema_upgrade.sql holds the later migrations in order. The
-- current version is both applied one after the other
-- (synchrod.testing.recorders.callrec_schema).
--
-- Where the public DDL is silent, the obvious behaviour was chosen and is
-- marked "(assumed)": the body of GET_NEXT__ID and of IS_LOCALABSPATH, the
-- sequence names behind the id functions, the CREATE TRIGGER statements not
-- published (the cfiles insert trigger; the couples insert, delete and update
-- triggers), and which migration brought digest and enc_key_id.
--
-- Left out on purpose: GRANTs to the suite's roles (callrecgrp and wbscgrp
-- are cluster-wide roles a test cluster does not have) and OWNER TO; views,
-- rules and application functions synchrod never meets (add_couple,
-- add_streamgroup, decode_streamgroup, get_cftype, the scorecard tables).

CREATE SCHEMA IF NOT EXISTS callrec;

-- --- id sequences and functions -------------------------------------------
-- CallREC takes every id from GET_NEXT_*ID(); the columns have no default.
CREATE SEQUENCE callrec.seq_calls;          -- (assumed) sequence names
CREATE SEQUENCE callrec.seq_couples;
CREATE SEQUENCE callrec.seq_cfiles;
CREATE SEQUENCE callrec.seq_streamgroups;
CREATE SEQUENCE callrec.seq_restore_queue;

-- (assumed) the published functions only show that it takes a sequence name
CREATE FUNCTION callrec.get_next__id(seqname varchar) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    RETURN nextval('callrec.' || seqname);
END;
$$;

CREATE FUNCTION callrec.get_next_callid() RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    RETURN callrec.get_next__id('seq_calls');
END;
$$;

CREATE FUNCTION callrec.get_next_coupleid() RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    RETURN callrec.get_next__id('seq_couples');
END;
$$;

CREATE FUNCTION callrec.get_next_cfileid() RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    RETURN callrec.get_next__id('seq_cfiles');
END;
$$;

CREATE FUNCTION callrec.get_next_sgrpid() RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    RETURN callrec.get_next__id('seq_streamgroups');
END;
$$;

-- --- domains ----------------------------------------------------------------
-- (assumed) a local absolute path: starts with '/', no empty, '.' or '..'
-- segment, no trailing '/'
CREATE FUNCTION callrec.is_localabspath(path varchar) RETURNS boolean
    LANGUAGE sql IMMUTABLE RETURNS NULL ON NULL INPUT AS $$
    SELECT path ~ '^(/[^/]+)+$' AND path !~ '/\.\.?(/|$)'
$$;

CREATE DOMAIN callrec.localabspath AS varchar
    CONSTRAINT dom_localabspath CHECK (VALUE IS NULL OR callrec.is_localabspath(VALUE));

CREATE DOMAIN callrec.synchro_mark AS varchar(1)
    CONSTRAINT dom_synchro_mark CHECK (VALUE IN ('S', 'N', 'E', 'F'));
CREATE DOMAIN callrec.mixer_mark AS varchar
    CONSTRAINT dom_mixer_mark CHECK (VALUE IN ('M', 'F'));
CREATE DOMAIN callrec.delete_mark AS varchar
    CONSTRAINT dom_delete_mark CHECK (VALUE IN ('D', 'F'));
CREATE DOMAIN callrec.restore_mark AS varchar
    CONSTRAINT dom_restore_mark CHECK (VALUE IN ('R', 'F', 'Q'));
CREATE DOMAIN callrec.archive_mark AS varchar
    CONSTRAINT dom_archive_mark CHECK (VALUE IN ('A', 'F'));
CREATE DOMAIN callrec.evaluate_mark AS varchar
    CONSTRAINT dom_evaluate_mark CHECK (VALUE IN ('E', 'B'));

CREATE DOMAIN callrec.problemstatus AS varchar
    CONSTRAINT dom_problemstatus CHECK (VALUE IN (
        'NO_PROBLEM', 'ALL_STREAM_DELETED', 'STILL_SAVING_STREAM', 'ONLY_ONE_STREAM',
        'STREAM_IS_NULL', 'NO_STREAMS', 'UNKNOWN_CODEC', 'NO_REPLY_FROM_RECORDER',
        'DECODER_IO_ERROR', 'DECODER_DIFF_PAYLOAD', 'DECODER_OVERSIZE_TARGET',
        'DECODER_NO_DEST_FORMAT', 'NO_REPLY_FROM_DECODER', 'UNKNOWN_RULES',
        'CAPTURE_FILE_NOT_FOUND', 'RECORDER_LICENSE_PROBLEM', 'CAPTURE_FILE_INCOMPLETE',
        'ONE_STREAM_INCOMPLETE'));

-- EXT_DATA_SAVED and FINISHED only: DECODED is an upgrade
CREATE DOMAIN callrec.couple_state AS varchar
    CONSTRAINT dom_couple_state CHECK (VALUE IN ('EXT_DATA_SAVED', 'FINISHED'));

CREATE DOMAIN callrec.cpltype AS varchar
    CONSTRAINT dom_cpltype CHECK (VALUE IN (
        'NORMAL', 'CONF', 'RECONN', 'PARK', 'UNPARK', 'BARGE', 'INSTREAMER'));

CREATE DOMAIN callrec.b_method AS varchar
    CONSTRAINT dom_b_method CHECK (VALUE IN ('TAPE', 'DISK_A', 'DISK_N', 'ARC', 'CEN'));

CREATE DOMAIN callrec.cksum_t_typ_d AS varchar
    CONSTRAINT dom_cksum_t_typ_d CHECK (VALUE IN ('CRC32', ''));

-- --- calls, couples, cfiles -------------------------------------------------
CREATE TABLE callrec.calls (
    id          integer NOT NULL,          -- GET_NEXT_CALLID()
    cplcnt      integer,                   -- couples recorded (kept by the application)
    start_ts    timestamp with time zone,  -- the couples' min start (kept by a trigger)
    stop_ts     timestamp with time zone,  -- their max stop (kept by a trigger)
    "length"    integer DEFAULT 0,
    realcplcnt  integer,                   -- couples stored (kept by a trigger)
    CONSTRAINT _calls_pk PRIMARY KEY (id)
);

CREATE TABLE callrec.couples (
    id                integer NOT NULL,    -- GET_NEXT_COUPLEID()
    callid            integer NOT NULL,
    start_ts          timestamp with time zone NOT NULL,
    stop_ts           timestamp with time zone NOT NULL,
    created_ts        timestamp with time zone,
    "length"          integer DEFAULT 0,
    cfcnt             integer,             -- number of cfiles (kept by a trigger)
    cftypes           bit(32),             -- their types as a bit mask (kept by a trigger)
    callingip         inet,
    calledip          inet,
    callingnr         varchar(255),
    originalcallednr  varchar(255),
    finalcallednr     varchar(255),
    callingpartyname  varchar(255),
    calledpartyname   varchar(255),
    cpltype           callrec.cpltype DEFAULT 'NORMAL',
    problemstatus     callrec.problemstatus DEFAULT 'NO_PROBLEM',
    description       text DEFAULT '',
    protected         boolean,             -- triggers refuse to delete it and its files
    sid               varchar(255) NOT NULL,
    synchronized      callrec.synchro_mark,
    mixed             callrec.mixer_mark,
    deleted           callrec.delete_mark,
    restored          callrec.restore_mark,
    archived          callrec.archive_mark,
    evaluated         callrec.evaluate_mark,
    b_method          callrec.b_method,
    b_location        varchar(255),
    state             callrec.couple_state,
    CONSTRAINT _couples_pk PRIMARY KEY (id),
    CONSTRAINT _couples_sid_unique UNIQUE (sid),
    CONSTRAINT _couples_callid_fk FOREIGN KEY (callid) REFERENCES callrec.calls (id) ON DELETE CASCADE
);
CREATE INDEX _couples_stop_ts_idx ON callrec.couples (stop_ts);
CREATE INDEX _couples_callid_startts_idx ON callrec.couples (callid, start_ts);
CREATE INDEX _couples_caller_origcallee_idx
    ON callrec.couples (callingnr varchar_pattern_ops, originalcallednr varchar_pattern_ops);
CREATE INDEX _couples_origcallee_idx ON callrec.couples (originalcallednr varchar_pattern_ops);
CREATE INDEX _couples_length_idx ON callrec.couples (length);
CREATE INDEX _couples_cpltype_idx ON callrec.couples (cpltype);
CREATE INDEX _couples_description_idx ON callrec.couples (description text_pattern_ops);
CREATE INDEX _couples_description_lower_idx ON callrec.couples (lower(description) text_pattern_ops);
CREATE INDEX _couples_sid_state_idx ON callrec.couples (sid, state);
CREATE INDEX _couples_stop_ts_synchronized_idx ON callrec.couples (stop_ts, synchronized);
CREATE INDEX _couples_id_startts_idx ON callrec.couples (start_ts DESC, id);
CREATE INDEX _couples_mixed_idx ON callrec.couples (mixed);
CREATE INDEX _couples_deleted_idx ON callrec.couples (deleted);
CREATE INDEX _couples_restored_idx ON callrec.couples (restored);
CREATE INDEX _couples_archived_idx ON callrec.couples (archived);
CREATE INDEX _couples_evaluated_idx ON callrec.couples (evaluated);

CREATE TABLE callrec.cfiles (
    id          integer NOT NULL,          -- GET_NEXT_CFILEID()
    sgid        integer NOT NULL,          -- stream group, GET_NEXT_SGRPID()
    cplid       integer NOT NULL,
    cftype      varchar(8),
    cktype      callrec.cksum_t_typ_d,
    ckvalue     bigint,
    cfsize      integer NOT NULL,
    cfpath      callrec.localabspath,
    start_ts    timestamp with time zone,
    stop_ts     timestamp with time zone,
    CONSTRAINT _cfiles_pk PRIMARY KEY (id),
    CONSTRAINT _cfiles_cplid FOREIGN KEY (cplid) REFERENCES callrec.couples (id) ON DELETE CASCADE,
    CONSTRAINT _cfiles_cftype_ck CHECK (cftype IN (
        'MAG', 'AUDIO', 'ARCHIVE', 'VIDEO', 'IMAGE', 'RECD'))
);
-- (assumed) the couple's files are found by an index long before the later
-- index migration named it
CREATE INDEX cfiles_cplid ON callrec.cfiles (cplid);

-- --- external data ----------------------------------------------------------
CREATE TABLE callrec.couple_extdata (
    cplid       integer NOT NULL,
    key         varchar(255) NOT NULL,
    value       text NOT NULL DEFAULT '',
    created_ts  timestamp with time zone DEFAULT now(),
    CONSTRAINT _couple_extdata_pk PRIMARY KEY (cplid, key, value),
    CONSTRAINT _couple_extdata_fk FOREIGN KEY (cplid) REFERENCES callrec.couples (id) ON DELETE CASCADE
);

-- keys shown as columns of couple_fixed_extdata (at most 15)
CREATE TABLE callrec.extdata_map (
    columnid  smallint NOT NULL,
    "key"     text,
    CONSTRAINT extdata_map_pk PRIMARY KEY (columnid),
    CONSTRAINT extdata_map_uq UNIQUE (key),
    CONSTRAINT _extdata_map_check CHECK (columnid > 0 AND columnid < 16)
);

CREATE TABLE callrec.couple_fixed_extdata (
    cplid   integer NOT NULL,
    col_1 text, col_2 text, col_3 text, col_4 text, col_5 text, col_6 text, col_7 text,
    col_8 text, col_9 text, col_10 text, col_11 text, col_12 text, col_13 text, col_14 text,
    col_15 text,
    CONSTRAINT fixed_primary PRIMARY KEY (cplid),
    CONSTRAINT fixed_cplid FOREIGN KEY (cplid) REFERENCES callrec.couples (id)
        MATCH SIMPLE ON UPDATE CASCADE ON DELETE CASCADE
);

-- --- restore queue ------------------------------------------------------------
CREATE TABLE callrec.restore_queue (
    id       integer NOT NULL DEFAULT nextval('callrec.seq_restore_queue'),
    callid   integer NOT NULL,
    cplid    integer NOT NULL,
    flag     varchar(20),
    exp      timestamp with time zone NULL DEFAULT NULL,
    archive  varchar(255) NOT NULL,
    updated  timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT _restore_queue_pk PRIMARY KEY (id),
    CONSTRAINT _restore_queue_cplid_fk FOREIGN KEY (cplid) REFERENCES callrec.couples (id) ON DELETE CASCADE,
    CONSTRAINT _restore_queue_callid_fk FOREIGN KEY (callid) REFERENCES callrec.calls (id) ON DELETE CASCADE,
    CONSTRAINT _restore_queue_unique_call_cpl UNIQUE (callid, cplid)
);

-- --- speech analytics --------------------------------------------------------
CREATE SEQUENCE callrec.speech_tags_seq;
CREATE TABLE callrec.speech_tags (
    tagid      integer NOT NULL DEFAULT nextval('callrec.speech_tags_seq'::regclass),
    tag_name   varchar(255) NOT NULL,
    state      varchar(255) CHECK (state = 'READY' OR state = 'INDEXING' OR state = 'UPDATING'),
    searchid   integer,                    -- a saved search (no foreign key in CallREC)
    icon       varchar(255),
    CONSTRAINT speech_tags_pk PRIMARY KEY (tagid)
);
CREATE UNIQUE INDEX speech_tags_name_unq_idx ON callrec.speech_tags (lower(tag_name));

CREATE SEQUENCE callrec.speech_phrases_seq;
CREATE TABLE callrec.speech_phrases (
    phraseid           integer NOT NULL DEFAULT nextval('callrec.speech_phrases_seq'::regclass),
    phrase_text        text NOT NULL,
    confidence         float CHECK (confidence >= 0 OR confidence <= 100),
    interaction_count  integer,
    last_count_date    timestamp with time zone,
    state              varchar(255) CHECK (state = 'READY' OR state = 'INDEXING' OR state = 'UPDATING'),
    enabled            boolean,
    CONSTRAINT _phrases_text_unique UNIQUE (phrase_text),
    CONSTRAINT speech_phrases_pk PRIMARY KEY (phraseid)
);

CREATE TABLE callrec.tag_to_phrases (
    phraseid  integer,
    tagid     integer,
    CONSTRAINT tag_to_phrases_pk PRIMARY KEY (tagid, phraseid),
    CONSTRAINT tag_to_phrases_tagid_fk FOREIGN KEY (tagid) REFERENCES callrec.speech_tags (tagid)
        ON UPDATE CASCADE ON DELETE CASCADE,
    CONSTRAINT tag_to_phrases_phraseid_fk FOREIGN KEY (phraseid)
        REFERENCES callrec.speech_phrases (phraseid) ON UPDATE CASCADE ON DELETE CASCADE
);

-- voice tags point at one audio file (a migration points them at the couple)
CREATE SEQUENCE callrec.voice_tags_seq;
CREATE TABLE callrec.voice_tags (
    voice_tagid  integer NOT NULL DEFAULT nextval('callrec.voice_tags_seq'::regclass),
    cfileid      integer NOT NULL,
    phraseid     integer NOT NULL,
    from_time    integer NOT NULL CHECK (from_time >= 0),   -- ms
    to_time      integer NOT NULL CHECK (to_time >= from_time),
    confidence   float CHECK (confidence >= 0 OR confidence <= 100),
    channel      varchar(1) CHECK (channel = 'L' OR channel = 'R'),
    CONSTRAINT voice_tags_pk PRIMARY KEY (voice_tagid),
    CONSTRAINT voice_tags_cfiles_fk FOREIGN KEY (cfileid) REFERENCES callrec.cfiles (id)
        ON UPDATE CASCADE ON DELETE CASCADE,
    CONSTRAINT voice_tags_phrases_fk FOREIGN KEY (phraseid) REFERENCES callrec.speech_phrases (phraseid)
        ON UPDATE CASCADE ON DELETE CASCADE
);
CREATE INDEX voice_phrase ON callrec.voice_tags (cfileid, phraseid);
CREATE INDEX "phraseIndex" ON callrec.voice_tags (phraseid, confidence);

-- --- functions ------------------------------------------------------------------
-- the bit of a file type in couples.cftypes; the types added later (PVMAG,
-- PVSTREAM, PVIDEO) have none and raise, as in CallREC
CREATE FUNCTION callrec.get_cftypemask(varchar) RETURNS bit(32)
    LANGUAGE plpgsql IMMUTABLE RETURNS NULL ON NULL INPUT AS $$
DECLARE
    _rv   integer;
    _type varchar := upper($1);
BEGIN
    IF _type = 'AUDIO' THEN _rv := 1;
    ELSIF _type = 'MAG' THEN _rv := 2;
    ELSIF _type = 'ARCHIVE' THEN _rv := 4;
    ELSIF _type = 'IMAGE' THEN _rv := 8;
    ELSIF _type = 'VIDEO' THEN _rv := 16;
    ELSIF _type = 'RECD' THEN _rv := 32;
    ELSE
        RAISE EXCEPTION 'unknown value in GET_CFTYPEMASK(VARCHAR)';
    END IF;
    RETURN CAST(_rv AS bit(32));
END;
$$;

CREATE FUNCTION callrec.add_call(integer) RETURNS integer
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT SECURITY DEFINER AS $$
DECLARE
    _id integer;
BEGIN
    SELECT INTO _id callrec.get_next_callid();
    INSERT INTO callrec.calls (id, cplcnt) VALUES (_id, $1);
    RETURN _id;
END;
$$;

-- cfiles keep couples.cfcnt and couples.cftypes
CREATE FUNCTION callrec.trig_cfiles_after_insert() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    _empty bit(32) := CAST(0 AS bit(32));
BEGIN
    UPDATE callrec.couples
       SET cftypes = coalesce(cftypes, _empty) | callrec.get_cftypemask(NEW.cftype),
           cfcnt = coalesce(cfcnt, 0) + 1
     WHERE id = NEW.cplid;
    RETURN NULL;
END;
$$;

CREATE FUNCTION callrec.trig_cfiles_after_delete() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    PERFORM cplid FROM callrec.cfiles cf WHERE cf.cplid = OLD.cplid AND cf.cftype = OLD.cftype;
    IF NOT FOUND THEN  -- the last file of its type: its bit goes
        UPDATE callrec.couples
           SET cftypes = cftypes & ~callrec.get_cftypemask(OLD.cftype),
               cfcnt = greatest(cfcnt - 1, 0)
         WHERE callrec.couples.id = OLD.cplid;
    ELSE
        UPDATE callrec.couples SET cfcnt = greatest(cfcnt - 1, 0) WHERE id = OLD.cplid;
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION callrec.trig_cfiles_after_update() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    _empty bit(32) := CAST(0 AS bit(32));
    _oldcplid integer;
BEGIN
    SELECT cplid INTO _oldcplid FROM callrec.cfiles cf
     WHERE cf.cplid = OLD.cplid AND cf.cftype = OLD.cftype;
    IF OLD.cplid <> NEW.cplid THEN
        UPDATE callrec.couples
           SET cftypes = coalesce(cftypes, _empty) | callrec.get_cftypemask(NEW.cftype),
               cfcnt = coalesce(cfcnt, 0) + 1
         WHERE id = NEW.cplid;
        IF _oldcplid IS NULL THEN
            UPDATE callrec.couples
               SET cftypes = cftypes & ~callrec.get_cftypemask(OLD.cftype),
                   cfcnt = greatest(cfcnt - 1, 0)
             WHERE callrec.couples.id = OLD.cplid;
        ELSE
            UPDATE callrec.couples SET cfcnt = greatest(cfcnt - 1, 0) WHERE id = OLD.cplid;
        END IF;
    ELSIF OLD.cftype <> NEW.cftype THEN
        IF _oldcplid IS NULL THEN
            UPDATE callrec.couples
               SET cftypes = cftypes & ~callrec.get_cftypemask(OLD.cftype)
                             | callrec.get_cftypemask(NEW.cftype)
             WHERE callrec.couples.id = OLD.cplid;
        ELSE
            UPDATE callrec.couples SET cftypes = cftypes | callrec.get_cftypemask(NEW.cftype)
             WHERE callrec.couples.id = OLD.cplid;
        END IF;
    END IF;
    RETURN NEW;
END;
$$;

-- protection: a protected couple's files other than RECD cannot be deleted
CREATE FUNCTION callrec.trig_cfiles_before_delete() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    PERFORM id FROM callrec.couples c
     WHERE OLD.cftype NOT IN ('RECD') AND c.id = OLD.cplid AND c.protected = true;
    IF FOUND THEN
        RAISE EXCEPTION 'Cannot delete cfile %, couple % is protected against deleting.',
            OLD.id, OLD.cplid;
    END IF;
    RETURN OLD;
END;
$$;

-- couples keep calls.realcplcnt and the call's start_ts, stop_ts and length
CREATE FUNCTION callrec.trig_couples_after_insert() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    call record;
BEGIN
    SELECT INTO call * FROM callrec.calls WHERE id = NEW.callid;
    IF call.start_ts IS NULL OR call.start_ts > NEW.start_ts THEN
        call.start_ts = NEW.start_ts;
    END IF;
    IF call.stop_ts IS NULL OR call.stop_ts < NEW.stop_ts THEN
        call.stop_ts = NEW.stop_ts;
    END IF;
    UPDATE callrec.calls
       SET realcplcnt = coalesce(realcplcnt, 0) + 1,
           start_ts = call.start_ts,
           stop_ts = call.stop_ts,
           length = coalesce(EXTRACT(EPOCH FROM call.stop_ts - call.start_ts)::integer, 0)
     WHERE id = NEW.callid;
    RETURN NULL;
END;
$$;

CREATE FUNCTION callrec.trig_couples_after_delete() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    UPDATE callrec.calls SET realcplcnt = realcplcnt - 1 WHERE id = OLD.callid;
    RETURN NULL;
END;
$$;

CREATE FUNCTION callrec.trig_couples_before_delete() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    IF OLD.protected = TRUE THEN
        RAISE EXCEPTION 'Couple % is protected against deleting', OLD.id;
    END IF;
    RETURN OLD;
END;
$$;

-- a couple left without files leaves the restore queue
CREATE FUNCTION callrec.on_couple_cfile_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.cfcnt != OLD.cfcnt AND (NEW.cfcnt IS NULL OR NEW.cfcnt <= 0) THEN
        DELETE FROM callrec.restore_queue WHERE cplid = NEW.id AND callid = NEW.callid;
    END IF;
    RETURN NEW;
END;
$$;

-- mapped extdata keys are mirrored into couple_fixed_extdata
CREATE FUNCTION callrec.insert_fixed_extdata(_key text, _val text, _cplid integer) RETURNS boolean
    LANGUAGE plpgsql AS $$
DECLARE
    _value  text;
    _id_col integer;
BEGIN
    SELECT INTO _id_col columnid FROM callrec.extdata_map WHERE "key" = _key;
    IF _id_col IS NULL THEN  -- a new key takes a free column and brings its existing values
        SELECT INTO _id_col columnid FROM callrec.extdata_map WHERE "key" IS NULL LIMIT 1;
        IF _id_col IS NULL THEN
            RAISE EXCEPTION 'ALL COLUMNS ARE FULL!';
        END IF;
        UPDATE callrec.extdata_map SET "key" = _key WHERE columnid = _id_col;
        PERFORM callrec.insertall_fixed_extdata(_key);
    END IF;
    _value := coalesce(replace(replace(_val, E'\\', E'\\\\'), '''', ''''''), '');
    IF EXISTS (SELECT 1 FROM callrec.couple_fixed_extdata WHERE cplid = _cplid) THEN
        EXECUTE 'UPDATE callrec.couple_fixed_extdata SET col_' || _id_col || ' = ''' || _value
             || ''' WHERE cplid = ' || _cplid;
    ELSE
        EXECUTE 'INSERT INTO callrec.couple_fixed_extdata (cplid, col_' || _id_col || ') VALUES ('
             || _cplid || ', ''' || _value || ''')';
    END IF;
    RETURN true;
END;
$$;

CREATE FUNCTION callrec.insertall_fixed_extdata(_key text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    row record;
BEGIN
    IF EXISTS (SELECT 1 FROM callrec.couple_extdata WHERE "key" = _key) THEN
        FOR row IN SELECT * FROM callrec.couple_extdata WHERE "key" = _key LOOP
            PERFORM callrec.insert_fixed_extdata(_key, row."value", row.cplid);
        END LOOP;
        RETURN true;
    END IF;
    RETURN false;
END;
$$;

CREATE FUNCTION callrec.trig_couples_ext_after_insert() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    _id_col integer;
BEGIN
    SELECT INTO _id_col columnid FROM callrec.extdata_map WHERE "key" = NEW.key;
    IF _id_col IS NOT NULL THEN
        -- CallREC calls it unqualified and relies on its search_path; qualified here
        PERFORM callrec.insert_fixed_extdata(NEW.key, NEW.value, NEW.cplid);
    END IF;
    RETURN NEW;
END;
$$;

-- --- triggers ----------------------------------------------------------------------
CREATE TRIGGER trigins AFTER INSERT ON callrec.cfiles          -- (assumed) statement
    FOR EACH ROW EXECUTE PROCEDURE callrec.trig_cfiles_after_insert();
CREATE TRIGGER trigdel AFTER DELETE ON callrec.cfiles
    FOR EACH ROW EXECUTE PROCEDURE callrec.trig_cfiles_after_delete();
CREATE TRIGGER trig_before_del BEFORE DELETE ON callrec.cfiles
    FOR EACH ROW EXECUTE PROCEDURE callrec.trig_cfiles_before_delete();
CREATE TRIGGER trigupdate AFTER UPDATE ON callrec.cfiles
    FOR EACH ROW EXECUTE PROCEDURE callrec.trig_cfiles_after_update();

CREATE TRIGGER trigins AFTER INSERT ON callrec.couples         -- (assumed) statement
    FOR EACH ROW EXECUTE PROCEDURE callrec.trig_couples_after_insert();
CREATE TRIGGER trigdel AFTER DELETE ON callrec.couples         -- (assumed) statement
    FOR EACH ROW EXECUTE PROCEDURE callrec.trig_couples_after_delete();
CREATE TRIGGER trig_before_del BEFORE DELETE ON callrec.couples  -- (assumed) statement
    FOR EACH ROW EXECUTE PROCEDURE callrec.trig_couples_before_delete();
CREATE TRIGGER trig_on_couple_cfile_update AFTER UPDATE ON callrec.couples
    FOR EACH ROW EXECUTE PROCEDURE callrec.on_couple_cfile_update();

CREATE TRIGGER trig_on_after_extdata_update AFTER UPDATE ON callrec.couple_extdata
    FOR EACH ROW EXECUTE PROCEDURE callrec.trig_couples_ext_after_insert();
CREATE TRIGGER trig_on_after_extdata_insert AFTER INSERT ON callrec.couple_extdata
    FOR EACH ROW EXECUTE PROCEDURE callrec.trig_couples_ext_after_insert();
