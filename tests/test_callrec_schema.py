"""The real CallREC schema (SPEC §2): ids from get_next_*id(), counters left
to CallREC's triggers, stream groups, protected couples, an older CallREC
version on either side, and databases that lack what synchrod needs."""
from __future__ import annotations

from _sync_helpers import (blob, cli, define_phrases, extdata, outcomes, set_source, set_synchro,
                           spec, target_couples, target_files, target_shas, source_sha, teach_cftype,
                           voice_tags, wav)
from conftest import TEMPLATE_LEGACY
from synchrod.testing.recorders import FileSpec


def _seq(env, name: str) -> int:
    return env.target(f"SELECT last_value FROM callrec.{name}")[0][0]


def test_ids_from_callrec_functions_and_counters_from_its_triggers(env):
    define_phrases(env, env.target_dsn(), "greeting")
    env.target("INSERT INTO callrec.extdata_map (columnid, key) VALUES (1, 'agent')")
    # ids taken on the target by something else first: synchrod must not reuse them
    env.target("SELECT callrec.get_next_callid(), callrec.get_next_coupleid(),"
               " callrec.get_next_cfileid(), callrec.get_next_sgrpid()")
    streams = [FileSpec("AUDIO", "/c/leg1/l.wav", stream="s1"), FileSpec("AUDIO", "/c/leg1/r.wav", stream="s1"),
               FileSpec("RECD", "/c/leg1/screen.recd", size=4096, content="bytes", stream="s2")]
    env.add_calls(0, [spec("leg1", streams, call_key="K", cplcnt=3, minutes_ago=30,
                           extdata=[("agent", "007"), ("queue", "sales")],
                           voice_tags=[("greeting", 1200, 1900, 87.5, "L")]),
                      spec("leg2", [wav("/c/leg2/a.wav")], call_key="K", minutes_ago=29)])
    totals = env.run_inprocess()["rec1"]
    assert (totals.state, totals.synchronized) == ("ok", 2), totals

    t = target_couples(env)
    (call_id, cplcnt, realcplcnt, start, stop, length), = env.target(
        "SELECT id, cplcnt, realcplcnt, start_ts, stop_ts, length FROM callrec.calls")
    assert t["leg1"]["callid"] == t["leg2"]["callid"] == call_id
    # ids come from CallREC's sequences, after the ones used before
    assert call_id == _seq(env, "seq_calls") == 2
    assert sorted(c["id"] for c in t.values()) == [2, 3] and _seq(env, "seq_couples") == 3
    files = env.target("SELECT f.id, f.sgid, c.sid, f.cftype, f.cfpath FROM callrec.cfiles f"
                       " JOIN callrec.couples c ON c.id = f.cplid ORDER BY f.id")
    assert [f[0] for f in files] == [2, 3, 4, 5] and _seq(env, "seq_cfiles") == 5
    # the two streams of leg1's audio share one new group; its screen has another
    sgids = {f[4].rsplit("/", 1)[1]: f[1] for f in files}
    leg1 = [f for f in files if f[2] == "leg1"]
    assert leg1[0][1] == leg1[1][1] != leg1[2][1]
    assert len(set(sgids.values())) == 3 and min(sgids.values()) > 1
    # counters kept by the triggers, not written twice
    assert (t["leg1"]["cfcnt"], t["leg2"]["cfcnt"]) == (3, 1)
    assert env.target("SELECT cftypes::int FROM callrec.couples WHERE sid = 'leg1'") == [(1 | 32,)]
    assert (cplcnt, realcplcnt) == (3, 2)   # the application's count, the trigger's count
    (s_start, s_stop), = env.source(0, "SELECT min(start_ts), max(stop_ts) FROM callrec.couples")
    assert (start, stop, length) == (s_start, s_stop, int((s_stop - s_start).total_seconds()))
    # a mapped extdata key reached couple_fixed_extdata through CallREC's trigger
    assert env.target("SELECT col_1 FROM callrec.couple_fixed_extdata") == [("007",)]
    assert extdata(env, "leg1") == {("agent", "007"), ("queue", "sales")}
    assert env.target("SELECT p.phrase_text, v.from_time, v.to_time, v.confidence, v.channel"
                      " FROM callrec.voice_tags v JOIN callrec.speech_phrases p USING (phraseid)") \
        == [("greeting", 1200, 1900, 87.5, "L")]
    # never copied: the replay server's own life-cycle marks
    assert env.target("SELECT synchronized, deleted, archived, b_method FROM callrec.couples"
                      " WHERE sid = 'leg1'") == [(None, None, None, None)]


def test_protected_target_couple_is_never_replaced(env):
    env.add_calls(0, [spec("p", [wav("/p/worse.wav", 1)], description="kept", protected=None,
                           extdata=[("from", "rec1")])])
    env.run_inprocess(only="rec1")
    env.target("UPDATE callrec.couples SET protected = true WHERE sid = 'p'")
    before = target_files(env, "p")
    env.add_calls(1, [spec("p", [wav("/p/better.wav", 1), wav("/p/more.wav", 2)],
                           description="better", extdata=[("from", "rec2")])])
    totals = env.run_inprocess(only="rec2")["rec2"]
    assert (totals.state, totals.not_used) == ("ok", 1), totals
    assert env.marks(1) == {"p": "N"}
    assert target_files(env, "p") == before                 # its media stays
    assert target_shas(env, "p") == [source_sha(env, 0, "/p/worse.wav")]
    assert target_couples(env)["p"]["description"] == "kept"
    assert extdata(env, "p") == {("from", "rec1"), ("from", "rec2")}  # metadata unioned


def test_protected_is_sticky(env):
    """True on either side stays true: a worse protected copy protects the
    target's; a better protected copy replaces the media (the old files are
    deleted before the couple becomes protected, which CallREC would refuse
    after)."""
    env.add_calls(0, [spec("w", [wav("/w/a.wav", 2)]), spec("b", [wav("/b/a.wav", 1)])])
    env.run_inprocess(only="rec1")
    env.add_calls(1, [spec("w", [wav("/w/b.wav", 1)], protected=True),
                      spec("b", [wav("/b/b.wav", 1), wav("/b/c.wav", 1)], protected=True)])
    totals = env.run_inprocess(only="rec2")["rec2"]
    assert (totals.state, totals.synchronized, totals.not_used) == ("ok", 1, 1), totals
    assert env.marks(1) == {"w": "N", "b": "S"}
    assert env.target("SELECT sid, protected FROM callrec.couples ORDER BY sid") == \
        [("b", True), ("w", True)]
    assert target_shas(env, "b") == sorted(source_sha(env, 1, p) for p in ("/b/b.wav", "/b/c.wav"))
    assert target_shas(env, "w") == [source_sha(env, 0, "/w/a.wav")]
    # nothing can delete a protected couple's files now: CallREC's trigger says so
    try:
        env.target("DELETE FROM callrec.cfiles WHERE cftype = 'AUDIO'")
    except Exception as exc:  # noqa: BLE001
        assert "protected against deleting" in str(exc)
    else:
        raise AssertionError("CallREC's protection trigger did not fire")


def test_an_older_callrec_recorder(make_env):
    """No digest, no agent columns, voice tags on cfiles, no DECODED: what it
    has is delivered; the target's extra columns keep their defaults."""
    env = make_env(templates={"rec1": TEMPLATE_LEGACY})
    define_phrases(env, env.target_dsn(), "hello")
    env.add_calls(0, [spec("old", [wav("/old/a.wav"), blob("RECD", "/old/s.recd")],
                           extdata=[("k", "v")], voice_tags=[("hello", 300)])])
    totals = env.run_inprocess(only="rec1")["rec1"]
    assert (totals.state, totals.synchronized) == ("ok", 1), totals
    assert env.marks(0) == {"old": "S"}
    assert voice_tags(env, "old") == {("hello", 300)}
    assert target_couples(env)["old"]["cfcnt"] == 2
    assert env.target("SELECT direction, dirty FROM callrec.couples") == [("UNKNOWN", True)]
    check = cli(env, "check")
    assert "callrec schema of source rec1: OK" in check.stdout, check.stdout


def test_an_older_callrec_replay_database(make_env):
    """A replay database before the DECODED state and the voice-tag migration:
    with voice tags on it is refused, naming the column; without, calls
    arrive, and a DECODED call (which it cannot hold) fails alone."""
    env = make_env(templates={"replay": TEMPLATE_LEGACY})
    set_synchro(env, only_finished=False)
    env.add_calls(0, [spec("fin", state="FINISHED"), spec("dec", state="DECODED", minutes_ago=59)])

    totals = env.run_inprocess(only="rec1")["rec1"]
    assert totals.state == "error" and "voice_tags.cplid is missing" in totals.error, totals
    assert "synchronize_voice_tags: false" in totals.error
    assert env.marks(0) == {"fin": None, "dec": None}
    assert env.target("SELECT count(*) FROM callrec.couples") == [(0,)]
    check = cli(env, "check")
    assert check.returncode == 1
    assert any(line.startswith("callrec schema of the target database: FAILED")
               and "voice_tags.cplid" in line for line in check.stdout.splitlines()), check.stdout

    set_synchro(env, synchronize_voice_tags=False)
    totals = env.run_inprocess(only="rec1")["rec1"]
    assert (totals.synchronized, totals.failed) == (1, 1), totals
    assert env.marks(0) == {"fin": "S", "dec": None}
    (reason, detail), = [(r, d) for r, d in env.target(
        "SELECT last_reason, last_detail FROM synchrod.attempts WHERE sid = 'dec'")]
    assert reason == "target_refused" and "dom_couple_state" in detail, detail
    # the refused call's copy did not stay behind
    assert len(env.target_files()) == 1


def test_ids_from_column_defaults_where_the_functions_are_missing(env):
    for table, seq in (("calls", "seq_calls"), ("couples", "seq_couples"), ("cfiles", "seq_cfiles")):
        env.target(f"ALTER TABLE callrec.{table} ALTER COLUMN id SET DEFAULT nextval('callrec.{seq}')")
    env.target("ALTER TABLE callrec.cfiles ALTER COLUMN sgid SET DEFAULT nextval('callrec.seq_streamgroups')")
    env.target("DROP FUNCTION callrec.add_call(integer), callrec.add_cfile(integer, integer, integer,"
               " callrec.cksum_t_typ_d, bigint, varchar, callrec.localabspath, varchar, varchar,"
               " timestamptz, timestamptz)")
    env.target("DROP FUNCTION callrec.get_next_callid(), callrec.get_next_coupleid(),"
               " callrec.get_next_cfileid(), callrec.get_next_sgrpid()")
    env.add_calls(0, [spec("d1"), spec("d2")])
    totals = env.run_inprocess(only="rec1")["rec1"]
    assert (totals.state, totals.synchronized) == ("ok", 2), totals
    assert env.target("SELECT count(*), max(id) FROM callrec.couples") == [(2, _seq(env, "seq_couples"))]


def test_a_database_lacking_what_synchrod_needs_is_named_and_untouched(env):
    env.target("ALTER TABLE callrec.calls ALTER COLUMN id DROP DEFAULT")
    env.target("DROP FUNCTION callrec.add_call(integer)")
    env.target("DROP FUNCTION callrec.get_next_callid()")
    env.source(1, "ALTER TABLE callrec.couples DROP COLUMN synchronized")
    env.add_calls(0, [spec("x")])
    proc = cli(env, "check")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert any(line.startswith("callrec schema of the target database: FAILED") and
               "callrec.calls.id has no default and callrec.get_next_callid() is missing" in line
               for line in lines), lines
    assert any(line.startswith("callrec schema of source rec2: FAILED") and
               "column callrec.couples.synchronized is missing" in line for line in lines), lines
    proc = env.once()
    assert proc.returncode == 1
    errors = {line.split(":", 1)[0]: line for line in proc.stdout.splitlines()[3:]}
    assert "replay database: callrec.calls.id has no default" in errors["rec1"], proc.stdout
    assert "recorder: column callrec.couples.synchronized is missing" in errors["rec2"]
    assert "recorder:" not in errors["rec1"]
    assert env.marks(0) == {"x": None}
    assert env.target("SELECT count(*) FROM callrec.couples") == [(0,)]
    assert env.target("SELECT count(*) FROM synchrod.attempts") == [(0,)]


def test_a_file_type_the_replay_database_cannot_hold(env):
    """PVMAG is in the cftype CHECK, but CallREC's GET_CFTYPEMASK raises on
    it: a source asked to take it is refused before anything is written."""
    teach_cftype(env, "PVMAG", 64, [env.source_dsn(0)])  # a recorder whose CallREC stores PVMAG files
    set_source(env, 0, extra_file_types=["PVMAG"])
    env.add_calls(0, [spec("pv", [wav("/pv/a.wav"), blob("PVMAG", "/pv/v.pvmag")])])
    totals = env.run_inprocess(only="rec1")["rec1"]
    assert totals.state == "error"
    assert "the replay database does not accept cftype PVMAG" in totals.error, totals
    assert env.marks(0) == {"pv": None}
    # a replay database that knows it takes it
    teach_cftype(env, "PVMAG", 64, [env.target_dsn()])
    totals = env.run_inprocess(only="rec1")["rec1"]
    assert (totals.state, totals.synchronized) == ("ok", 1), totals
    assert sorted(t for t, *_ in target_files(env, "pv")) == ["AUDIO", "PVMAG"]
    assert outcomes(env)["pv"] == [("synchronized", None)]


def test_a_row_the_target_refuses_fails_alone(env):
    """A value a domain of the replay database refuses (here a cpltype only the
    recorder knows) fails that call; the rest of the batch commits."""
    env.source(0, "ALTER DOMAIN callrec.cpltype DROP CONSTRAINT dom_cpltype")
    env.add_calls(0, [spec(f"ok{i}", minutes_ago=50 - i) for i in range(5)]
                  + [spec("odd", minutes_ago=40, columns={"cpltype": "HOLOGRAM"})]
                  + [spec(f"ok{i}", minutes_ago=40 - i) for i in range(5, 9)])
    totals = env.run_inprocess(until_idle=False, only="rec1")["rec1"]
    assert (totals.synchronized, totals.failed) == (9, 1), totals
    marks = env.marks(0)
    assert marks.pop("odd") is None and set(marks.values()) == {"S"}
    (reason, detail), = env.target("SELECT last_reason, last_detail FROM synchrod.attempts")
    assert reason == "target_refused" and "dom_cpltype" in detail
    assert len(env.target_files()) == 9   # the refused call's copy was removed
    assert env.target("SELECT count(*) FROM synchrod.pending_files") == [(0,)]


def test_voice_tags_follow_a_live_reload(env):
    """The batch query is the recorder connection's, kept across reloads:
    switching synchronize_voice_tags on must bring the tags with the next call."""
    import asyncio

    from synchrod.config import from_dict
    from synchrod.sync.engine import Engine
    from synchrod.sync.rounds import run_round

    define_phrases(env, env.target_dsn(), "hello")
    set_synchro(env, synchronize_voice_tags=False)
    env.add_calls(0, [spec("off", voice_tags=[("hello", 10)], minutes_ago=60)])

    async def go():
        engine = Engine(env.config)
        await engine.open()
        try:
            await run_round(engine, "rec1")
            env.add_calls(0, [spec("on", voice_tags=[("hello", 20)], minutes_ago=50)])
            raw = dict(env.raw, synchro={**env.raw["synchro"], "synchronize_voice_tags": True})
            engine.apply_config(from_dict(raw, str(env.config_path)))
            await run_round(engine, "rec1")
        finally:
            await engine.close()
    asyncio.run(go())
    assert env.marks(0) == {"off": "S", "on": "S"}
    assert (voice_tags(env, "off"), voice_tags(env, "on")) == (set(), {("hello", 20)})
