-- The later CallREC migrations, in order, applied over callrec_schema.sql:
-- together they are the current version of the schema (see the header of
-- callrec_schema.sql). Reconstructed from the public migration scripts.

-- CAL-5708 and others: call direction, agents, domains, day and time of day,
-- and the DECODED state
ALTER TABLE callrec.couples ADD COLUMN direction varchar(25) DEFAULT 'UNKNOWN';
ALTER TABLE callrec.couples ADD CONSTRAINT couples_direction
    CHECK (direction IN ('INCOMING', 'OUTGOING', 'INTERNAL', 'UNKNOWN'));
ALTER TABLE callrec.couples
    ADD COLUMN callingagent varchar(255),
    ADD COLUMN calledagent varchar(255);
ALTER TABLE callrec.couples
    ADD COLUMN calling_domain varchar(255),
    ADD COLUMN called_domain varchar(255),
    ADD COLUMN original_domain varchar(255);
ALTER TABLE callrec.couples
    ADD COLUMN dayofweek integer CONSTRAINT valid_day_of_week CHECK (dayofweek >= 0 AND dayofweek <= 6),
    ADD COLUMN timeofday integer CONSTRAINT positive_time CHECK (timeofday >= 0);
ALTER DOMAIN callrec.couple_state DROP CONSTRAINT dom_couple_state;
ALTER DOMAIN callrec.couple_state ADD CONSTRAINT dom_couple_state
    CHECK (VALUE IN ('EXT_DATA_SAVED', 'DECODED', 'FINISHED'));

-- (assumed) encrypted media and its digest, with ADD_CFILE taking both
ALTER TABLE callrec.cfiles ADD COLUMN enc_key_id varchar, ADD COLUMN digest varchar;
CREATE FUNCTION callrec.add_cfile(integer, integer, integer, callrec.cksum_t_typ_d, bigint,
        varchar, callrec.localabspath, varchar, varchar, timestamptz, timestamptz)
    RETURNS integer
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT SECURITY DEFINER AS $$
DECLARE
    _id integer;
BEGIN
    SELECT INTO _id callrec.get_next_cfileid();
    INSERT INTO callrec.cfiles (id, sgid, cplid, cftype, cktype, ckvalue, cfsize, cfpath,
                                enc_key_id, digest, start_ts, stop_ts)
    VALUES (_id, coalesce($2, callrec.get_next_sgrpid()), $1, $6, $4, $5, $3, $7, $8, $9, $10, $11);
    RETURN _id;
END;
$$;

-- change tracking: dirty couples and tombstones of deleted ones
ALTER TABLE callrec.couples ADD COLUMN updated_ts timestamp with time zone DEFAULT NULL;
CREATE INDEX couples_updated_ts_idx ON callrec.couples (updated_ts);
ALTER TABLE callrec.couples ADD COLUMN dirty boolean;
ALTER TABLE callrec.couples ALTER COLUMN dirty SET DEFAULT true;
CREATE INDEX couples_dirty_idx ON callrec.couples (id, dirty) WHERE dirty;
CREATE INDEX couples_updated_ts_id_not_dirty_idx ON callrec.couples (updated_ts, id) WHERE dirty = false;

CREATE TABLE callrec.deleted_couples (
    deleted_coupleid  serial,
    sid               varchar(255) NOT NULL,
    deleted_ts        timestamp with time zone DEFAULT NULL,
    CONSTRAINT deleted_coupleid_pk PRIMARY KEY (deleted_coupleid)
);
CREATE INDEX deleted_coupleid_deleted_ts_idx ON callrec.deleted_couples (deleted_ts);

-- the switch is compiled into a function (CallREC rewrites it); off by default
CREATE FUNCTION callrec.set_track_changes_enabled(IN enabled boolean) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'CREATE OR REPLACE FUNCTION callrec.track_changes_enabled() RETURNS boolean AS $INNER$
             BEGIN RETURN ' || enabled || '; END; $INNER$ LANGUAGE plpgsql IMMUTABLE;';
END;
$$;
SELECT callrec.set_track_changes_enabled(false);

CREATE OR REPLACE FUNCTION callrec.trig_cfiles_after_insert() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    _empty bit(32) := CAST(0 AS bit(32));
BEGIN
    UPDATE callrec.couples
       SET cftypes = coalesce(cftypes, _empty) | callrec.get_cftypemask(NEW.cftype),
           cfcnt = coalesce(cfcnt, 0) + 1
     WHERE id = NEW.cplid;
    IF callrec.track_changes_enabled() THEN
        UPDATE callrec.couples SET dirty = true WHERE id = NEW.cplid;
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION callrec.cfiles_update_delete() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    IF callrec.track_changes_enabled() THEN
        UPDATE callrec.couples SET dirty = true WHERE id = OLD.cplid;
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER trig_on_cfile_update_delete AFTER UPDATE OR DELETE ON callrec.cfiles
    FOR EACH ROW EXECUTE PROCEDURE callrec.cfiles_update_delete();

-- a change that does not set updated_ts makes the couple dirty
CREATE FUNCTION callrec.couple_updated() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    IF callrec.track_changes_enabled()
       AND (NEW.updated_ts IS NULL OR NEW.updated_ts = OLD.updated_ts) THEN
        NEW.dirty = true;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER trig_on_couple_update BEFORE UPDATE ON callrec.couples  -- (assumed) statement
    FOR EACH ROW EXECUTE PROCEDURE callrec.couple_updated();

CREATE FUNCTION callrec.couple_deleted() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    IF callrec.track_changes_enabled() THEN
        INSERT INTO callrec.deleted_couples (sid) VALUES (OLD.sid);
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER trig_on_couple_delete AFTER DELETE ON callrec.couples
    FOR EACH ROW EXECUTE PROCEDURE callrec.couple_deleted();

CREATE OR REPLACE FUNCTION callrec.trig_couples_ext_after_insert() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    _id_col integer;
BEGIN
    IF callrec.track_changes_enabled() THEN
        UPDATE callrec.couples SET dirty = true WHERE id = NEW.cplid;
    END IF;
    SELECT INTO _id_col columnid FROM callrec.extdata_map WHERE "key" = NEW.key;
    IF _id_col IS NOT NULL THEN
        -- CallREC calls it unqualified and relies on its search_path; qualified here
        PERFORM callrec.insert_fixed_extdata(NEW.key, NEW.value, NEW.cplid);
    END IF;
    RETURN NEW;
END;
$$;

CREATE FUNCTION callrec.couple_extdata_delete() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    IF callrec.track_changes_enabled() THEN
        UPDATE callrec.couples SET dirty = true WHERE id = OLD.cplid;
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER trig_on_couple_extdata_delete AFTER DELETE ON callrec.couple_extdata
    FOR EACH ROW EXECUTE PROCEDURE callrec.couple_extdata_delete();

-- SC-6006: evaluations became a set of scorecard usages
ALTER DOMAIN callrec.evaluate_mark DROP CONSTRAINT dom_evaluate_mark;
ALTER DOMAIN callrec.evaluate_mark ADD CONSTRAINT dom_scorecard_usage CHECK (VALUE ~ '^[EBTS]*$');
ALTER TABLE callrec.couples RENAME COLUMN evaluated TO scorecard_use;

-- CAL-14169: phone-video file types (GET_CFTYPEMASK was not taught them)
ALTER TABLE callrec.cfiles DROP CONSTRAINT _cfiles_cftype_ck;
ALTER TABLE callrec.cfiles ADD CONSTRAINT _cfiles_cftype_ck CHECK (cftype IN (
    'MAG', 'AUDIO', 'ARCHIVE', 'VIDEO', 'IMAGE', 'RECD', 'PVMAG', 'PVSTREAM', 'PVIDEO'));

-- CAL-14190 and CAL-14465: phone-video problem states, media properties and direction
ALTER TABLE callrec.couples ADD COLUMN calling_pv_problemstatus callrec.problemstatus;
ALTER TABLE callrec.couples ADD COLUMN called_pv_problemstatus callrec.problemstatus;
ALTER TABLE callrec.cfiles ADD COLUMN props varchar(4000);
ALTER TABLE callrec.cfiles ADD COLUMN direction varchar(7)
    CONSTRAINT _cfiles_direction_ck CHECK (direction IN ('CALLING', 'CALLED'));

ALTER TABLE callrec.cfiles ADD COLUMN archived callrec.archive_mark DEFAULT NULL;
ALTER TABLE callrec.cfiles ADD COLUMN restored callrec.restore_mark DEFAULT NULL;

-- indexes of cfiles, cfpath unique
DROP INDEX callrec.cfiles_cplid;
CREATE INDEX _cfiles_sgid_idx ON callrec.cfiles (sgid);
CREATE INDEX _cfiles_cplid_idx ON callrec.cfiles (cplid);
CREATE UNIQUE INDEX _cfiles_path_uk_like ON callrec.cfiles ((cfpath) varchar_pattern_ops);
CREATE INDEX _cfiles_cftype_idx ON callrec.cfiles (cftype);

-- speech tags visible to chosen groups
ALTER TABLE callrec.speech_tags ADD COLUMN visiblefor varchar(255) DEFAULT 'ALL_GROUPS';
ALTER TABLE callrec.speech_tags ADD COLUMN serializedvisibleforgroups text;

-- voice tags move from the audio file to its couple
CREATE TABLE callrec.voice_tags_temp (
    voice_tagid  integer NOT NULL DEFAULT nextval('callrec.voice_tags_seq'::regclass),
    cplid        integer NOT NULL,
    phraseid     integer NOT NULL,
    from_time    integer NOT NULL,
    to_time      integer NOT NULL,
    confidence   double precision,
    channel      varchar(1)
);
INSERT INTO callrec.voice_tags_temp (voice_tagid, cplid, phraseid, from_time, to_time, confidence, channel)
SELECT vt.voice_tagid, (SELECT cf.cplid FROM callrec.cfiles cf WHERE vt.cfileid = cf.id),
       vt.phraseid, vt.from_time, vt.to_time, vt.confidence, vt.channel
  FROM callrec.voice_tags vt;
DROP TABLE callrec.voice_tags;
ALTER TABLE callrec.voice_tags_temp ADD CONSTRAINT voice_tags_pk PRIMARY KEY (voice_tagid);
ALTER TABLE callrec.voice_tags_temp ADD CONSTRAINT voice_tags_couples_fk FOREIGN KEY (cplid)
    REFERENCES callrec.couples (id) ON UPDATE CASCADE ON DELETE CASCADE;
ALTER TABLE callrec.voice_tags_temp ADD CONSTRAINT voice_tags_phrases_fk FOREIGN KEY (phraseid)
    REFERENCES callrec.speech_phrases (phraseid) MATCH SIMPLE ON UPDATE CASCADE ON DELETE CASCADE;
ALTER TABLE callrec.voice_tags_temp ADD CONSTRAINT voice_tags_channel_check
    CHECK (channel::text = 'L'::text OR channel::text = 'R'::text);
ALTER TABLE callrec.voice_tags_temp ADD CONSTRAINT voice_tags_check CHECK (to_time >= from_time);
ALTER TABLE callrec.voice_tags_temp ADD CONSTRAINT voice_tags_confidence_check
    CHECK (confidence >= 0::double precision OR confidence <= 100::double precision);
ALTER TABLE callrec.voice_tags_temp ADD CONSTRAINT voice_tags_from_time_check CHECK (from_time >= 0);
CREATE INDEX voice_phrase ON callrec.voice_tags_temp (cplid, phraseid);
CREATE INDEX phraseindex ON callrec.voice_tags_temp (phraseid, confidence);

CREATE FUNCTION callrec.voice_tags_inserted() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    IF callrec.track_changes_enabled() THEN
        UPDATE callrec.couples SET dirty = true WHERE id = NEW.cplid;
    END IF;
    RETURN NEW;
END;
$$;
CREATE FUNCTION callrec.voice_tags_updated_deleted() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    IF callrec.track_changes_enabled() THEN
        UPDATE callrec.couples SET dirty = true WHERE id = OLD.cplid;
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER trig_on_voice_tags_insert AFTER INSERT ON callrec.voice_tags_temp
    FOR EACH ROW EXECUTE PROCEDURE callrec.voice_tags_inserted();
CREATE TRIGGER trig_on_voice_tags_update_delete AFTER UPDATE OR DELETE ON callrec.voice_tags_temp
    FOR EACH ROW EXECUTE PROCEDURE callrec.voice_tags_updated_deleted();
ALTER TABLE callrec.voice_tags_temp RENAME TO voice_tags;
