"""SPEC §3.1 (candidates), §3.2 (files taken), §3.4/§3.5 (quality and dedup
by sid) and the speech-tag distribution, on real databases and real files."""
from __future__ import annotations

import pytest

from _sync_helpers import (define_phrases, define_tags, teach_cftype, attempts, blob, cli, expire_backoff, extdata, outcomes, retone,
                           run_bounded, set_source, set_synchro, sha256, source_sha, spec,
                           speech_tags, target_couples, target_cftypes, target_files, target_shas,
                           voice_tags, wav)
from synchrod.testing.recorders import FileSpec, write_wav


# --- §3.1 candidates -------------------------------------------------------------

def test_only_unsynchronized_couples_are_candidates(env):
    env.add_calls(0, [spec("new"), spec("was_s", synchronized="S"), spec("was_n", synchronized="N"),
                      spec("was_e", synchronized="E"), spec("was_f", synchronized="F")])
    totals = env.run_inprocess()
    assert totals["rec1"].taken == 1 and totals["rec1"].synchronized == 1
    assert set(target_couples(env)) == {"new"}
    assert env.marks(0) == {"new": "S", "was_s": "S", "was_n": "N", "was_e": "E", "was_f": "F"}
    assert [sha256(p) for p in env.target_files()] == [source_sha(env, 0, "/calls/new/0.wav")]


def test_already_synchronized_taken_once_then_idle(env):
    set_source(env, 0, synchronize_already_synchronized=True)
    env.add_calls(0, [spec("was_s", minutes_ago=50, synchronized="S"),
                      spec("was_n", minutes_ago=40, synchronized="N"),
                      spec("was_e", minutes_ago=30, synchronized="E"),
                      spec("was_f", minutes_ago=20, synchronized="F"),
                      spec("new", minutes_ago=10)])
    first = run_bounded(env)["rec1"]
    assert first.synchronized == 4 and first.failed == 0
    assert set(target_couples(env)) == {"was_s", "was_n", "was_e", "new"}
    assert env.marks(0) == {"was_s": "S", "was_n": "S", "was_e": "S", "was_f": "F", "new": "S"}
    runs_before = env.target("SELECT count(*) FROM synchrod.runs WHERE source = 'rec1'")[0][0]

    second = run_bounded(env)["rec1"]
    assert (second.taken, second.synchronized, second.not_used) == (0, 0, 0)
    assert second.cycles == 1
    assert env.target("SELECT count(*) FROM synchrod.runs WHERE source = 'rec1'")[0][0] == runs_before
    assert len(env.target_files()) == 4


def test_resync_of_own_calls_keeps_their_S_mark(env):
    env.add_calls(0, [spec("x", minutes_ago=30), spec("y", minutes_ago=20)])
    run_bounded(env)
    files_before = {p: sha256(p) for p in env.target_files()}
    set_source(env, 0, synchronize_already_synchronized=True)
    again = run_bounded(env)["rec1"]
    assert again.taken == 2 and again.failed == 0
    # delivered by this source before: stays S, never turned into N
    assert env.marks(0) == {"x": "S", "y": "S"}
    assert {p: sha256(p) for p in env.target_files()} == files_before
    assert env.target("SELECT count(*) FROM callrec.couples")[0][0] == 2
    assert run_bounded(env)["rec1"].taken == 0


def test_already_synchronized_call_that_fails_is_retried_after_backoff(env):
    set_source(env, 0, synchronize_already_synchronized=True)
    env.add_calls(0, [spec("bad", [FileSpec("AUDIO", "/bad.wav", content="none")], minutes_ago=50,
                           synchronized="S"),
                      spec("ok1", minutes_ago=40, synchronized="S"),
                      spec("ok2", minutes_ago=30, synchronized="N")])
    run_bounded(env)
    assert attempts(env) == {"bad": (1, "missing_file")}
    assert set(target_couples(env)) == {"ok1", "ok2"}
    write_wav(env.mounts[0] / "bad.wav", 1)  # the file turns up
    expire_backoff(env)
    run_bounded(env)
    assert "bad" in target_couples(env)
    assert attempts(env) == {}


AGES = {"h1": 60, "d5": 5 * 1440, "d10": 10 * 1440, "d40": 40 * 1440, "d70": 70 * 1440}


def test_interval(env):
    """Widening the interval step by step takes exactly the calls it newly covers."""
    env.add_calls(0, [spec(sid, minutes_ago=m) for sid, m in AGES.items()])
    taken: set[str] = set()
    for interval, days, newly in [("yesterday", None, {"h1"}), ("last_week", None, {"d5"}),
                                  ("last_month", None, {"d10"}), ("custom", 60, {"d40"}),
                                  ("all", None, {"d70"})]:
        set_source(env, 0, interval=interval, custom_interval_days=days)
        env.run_inprocess()
        taken |= newly
        marks = env.marks(0)
        assert {s for s, m in marks.items() if m == "S"} == taken, interval
        assert all(marks[s] is None for s in set(AGES) - taken), interval
        assert set(target_couples(env)) == taken, interval


def test_only_finished(env):
    env.add_calls(0, [spec("fin", state="FINISHED"), spec("dec", state="DECODED"),
                      spec("ext", state="EXT_DATA_SAVED"), spec("nostate", state=None)])
    env.run_inprocess()
    assert env.marks(0) == {"fin": "S", "dec": None, "ext": None, "nostate": None}
    set_synchro(env, only_finished=False)
    env.run_inprocess()
    assert set(env.marks(0).values()) == {"S"}
    assert target_couples(env)["dec"]["state"] == "DECODED"
    assert target_couples(env)["nostate"]["state"] is None


def test_only_processed(env):
    env.add_calls(0, [spec("mixed", mixed="M"), spec("fmix", mixed="F"), spec("raw", mixed=None)])
    env.run_inprocess()
    assert env.marks(0) == {"mixed": "S", "fmix": None, "raw": None}
    assert set(target_couples(env)) == {"mixed"}
    set_synchro(env, only_processed=False)
    env.run_inprocess()
    assert env.marks(0) == {"mixed": "S", "fmix": "S", "raw": "S"}


def test_couples_without_streams(env):
    env.add_calls(0, [spec("empty", files=[]), spec("full")])
    env.run_inprocess()
    assert env.marks(0) == {"empty": None, "full": "S"}
    set_synchro(env, synchronize_couples_without_streams=True)
    env.run_inprocess()
    assert env.marks(0) == {"empty": "S", "full": "S"}
    t = target_couples(env)
    # cfcnt is CallREC's trigger's: NULL until a file arrives, as on the recorder
    assert t["empty"]["cfcnt"] is None and t["full"]["cfcnt"] == 1
    assert env.source(0, "SELECT cfcnt FROM callrec.couples WHERE sid = 'empty'") == [(None,)]
    assert target_files(env, "empty") == []


def test_oldest_first_at_most_calls_per_period(env):
    set_synchro(env, calls_per_period=3)
    ages = {"c50": 50, "c10": 10, "c70": 70, "c30": 30, "c60": 60, "c20": 20, "c40": 40}
    env.add_calls(0, [spec(s, minutes_ago=m) for s, m in ages.items()])  # ids not in age order
    proc = env.once(check_rc=0)  # one cycle: no --until-idle
    head = proc.stdout.splitlines()[0].split()
    row = next(line.split() for line in proc.stdout.splitlines() if line.startswith("rec1 "))
    assert {k: row[head.index(k)] for k in ("cycles", "taken", "S")} == {
        "cycles": "1", "taken": "3", "S": "3"}
    assert {s for s, m in env.marks(0).items() if m == "S"} == {"c70", "c60", "c50"}
    env.run_inprocess(until_idle=False)
    assert {s for s, m in env.marks(0).items() if m == "S"} == {"c70", "c60", "c50", "c40", "c30", "c20"}
    assert len(target_couples(env)) == 6


def test_calls_in_backoff_are_not_candidates(env):
    set_synchro(env, backoff_base=3600, calls_per_period=1)
    env.add_calls(0, [spec("late", [FileSpec("AUDIO", "/calls/late.wav", content="none")],
                           minutes_ago=50),
                      spec("fine", minutes_ago=40), spec("newer", minutes_ago=30)])
    first = env.run_inprocess(until_idle=False)["rec1"]
    assert (first.taken, first.failed) == (1, 1)
    assert attempts(env) == {"late": (1, "missing_file")}
    write_wav(env.mounts[0] / "calls/late.wav", 1)  # the file turns up, but back-off holds
    # the oldest call is in back-off: the next oldest fill the batch instead
    for expected in ({"late": None, "fine": "S", "newer": None},
                     {"late": None, "fine": "S", "newer": "S"}):
        totals = env.run_inprocess(until_idle=False)["rec1"]
        assert (totals.taken, totals.synchronized) == (1, 1)
        assert env.marks(0) == expected
    assert env.run_inprocess(until_idle=False)["rec1"].taken == 0
    expire_backoff(env)
    again = env.run_inprocess(until_idle=False)["rec1"]
    assert (again.taken, again.synchronized) == (1, 1)
    assert env.marks(0) == {"late": "S", "fine": "S", "newer": "S"}
    assert attempts(env) == {}


# --- §3.2 files taken ------------------------------------------------------------

ALL_TYPES = ["ARCHIVE", "AUDIO", "IMAGE", "INDEX", "MAG", "RECD", "VIDEO"]
SWITCHES_OFF = {"synchronize_audio": True, "synchronize_video": True,
                "synchronize_screens_recd": True, "synchronize_index_files": True,
                "only_mixed": False}


def _media_calls(tag: str):
    d = f"/m/{tag}"
    full = [wav(f"{d}/full/a.wav"), blob("ARCHIVE", f"{d}/full/a.arc"),
            blob("MAG", f"{d}/full/raw.mag"), blob("VIDEO", f"{d}/full/v.vid"),
            blob("IMAGE", f"{d}/full/i.png"), blob("RECD", f"{d}/full/s.recd"),
            blob("INDEX", f"{d}/full/x.idx")]
    no_audio = [blob("VIDEO", f"{d}/na/v.vid"), blob("IMAGE", f"{d}/na/i.png"),
                blob("RECD", f"{d}/na/s.recd"), blob("INDEX", f"{d}/na/x.idx")]
    return [spec(f"{tag}-full", full), spec(f"{tag}-noaudio", no_audio)]


def _without(*types):
    return sorted(set(ALL_TYPES) - set(types))


# (stage, synchro overrides, source overrides, types taken of the full couple, of the no-audio one)
SWITCH_STAGES = [
    ("defaults", {}, {}, _without("MAG"), ["IMAGE", "INDEX", "RECD", "VIDEO"]),
    ("no_audio", {}, {"synchronize_audio": False}, ["IMAGE", "INDEX", "RECD", "VIDEO"],
     ["IMAGE", "INDEX", "RECD", "VIDEO"]),
    ("no_video", {}, {"synchronize_video": False}, ["ARCHIVE", "AUDIO", "INDEX", "RECD"],
     ["INDEX", "RECD"]),
    ("no_recd", {}, {"synchronize_screens_recd": False}, _without("MAG", "RECD"),
     ["IMAGE", "INDEX", "VIDEO"]),
    ("no_index", {}, {"synchronize_index_files": False}, _without("MAG", "INDEX"),
     ["IMAGE", "RECD", "VIDEO"]),
    ("only_mixed", {}, {"only_mixed": True}, _without("MAG"), ["IMAGE", "INDEX"]),
    ("raw_capture", {"only_processed": False}, {}, ALL_TYPES, ["IMAGE", "INDEX", "RECD", "VIDEO"]),
    ("raw_no_audio", {"only_processed": False}, {"synchronize_audio": False},
     ["IMAGE", "INDEX", "RECD", "VIDEO"], ["IMAGE", "INDEX", "RECD", "VIDEO"]),
]


def test_file_switches(env):
    """Each stage switches a type off (or on) and syncs new calls: only the
    files of the switched-on types land on the target, and on its disk."""
    teach_cftype(env, "INDEX", 64)  # an installation that has INDEX files
    expected_files = 0
    for stage, synchro, source, want_full, want_noaudio in SWITCH_STAGES:
        set_synchro(env, **{"only_processed": True, **synchro})
        set_source(env, 0, **{**SWITCHES_OFF, **source})
        env.add_calls(0, _media_calls(stage))
        env.run_inprocess()
        marks = env.marks(0)
        assert (marks[f"{stage}-full"], marks[f"{stage}-noaudio"]) == ("S", "S"), stage
        assert target_cftypes(env, f"{stage}-full") == want_full, stage
        assert target_cftypes(env, f"{stage}-noaudio") == want_noaudio, stage
        t = target_couples(env)
        assert (t[f"{stage}-full"]["cfcnt"], t[f"{stage}-noaudio"]["cfcnt"]) == (
            len(want_full), len(want_noaudio)), stage
        expected_files += len(want_full) + len(want_noaudio)
        assert len(env.target_files()) == expected_files, stage  # exactly the taken files


# --- §3.4 / §3.5 quality and dedup by sid ----------------------------------------------

def _build(sid: str, kw: dict, tag: str, **extra):
    kw = dict(kw)
    files = [wav(f"/q/{sid}/{tag}/{n}.wav", seconds=s) for n, s in enumerate(kw.pop("seconds", [1]))]
    return spec(sid, files, description=tag, callingnr=f"nr-{tag}", **kw, **extra)


QUALITY_CASES = {
    # worse (on rec1), better (on rec2): the first difference decides, whatever comes after it
    "state": ({"state": "DECODED", "seconds": [1, 1]}, {"state": "FINISHED"}),
    "state_null": ({"state": None, "length": 99}, {"state": "EXT_DATA_SAVED"}),
    "problem": ({"problemstatus": "ONLY_ONE_STREAM", "seconds": [2, 2]},
                {"problemstatus": "NO_PROBLEM"}),
    "partial_problem": ({"problemstatus": "DECODER_IO_ERROR", "seconds": [2, 2]},
                        {"problemstatus": "CAPTURE_FILE_INCOMPLETE"}),
    "files": ({"seconds": [4]}, {"seconds": [1, 1]}),
    "bytes": ({"seconds": [1], "length": 99}, {"seconds": [2]}),
    "length": ({"length": 10}, {"length": 20}),
}


@pytest.mark.parametrize("order", ["worse_first", "better_first"])
def test_better_copy_wins_whatever_the_order(env, order):
    set_synchro(env, only_finished=False)
    define_phrases(env, env.target_dsn(), "t1", "t2", "shared")  # voice tags map by phrase
    worse = {c: _build(f"q-{c}", w, "worse", extdata=[("agent", "42"), ("queue", "sales")],
                       voice_tags=[("t1", 100), ("shared", 5)])
             for c, (w, _) in QUALITY_CASES.items()}
    better = {c: _build(f"q-{c}", b, "better", extdata=[("agent", "43"), ("queue", "sales")],
                        voice_tags=[("t2", 200), ("shared", 5)])
              for c, (_, b) in QUALITY_CASES.items()}
    env.add_calls(0, list(worse.values()))
    env.add_calls(1, list(better.values()))
    for b in better.values():  # distinct bytes, so the target shows whose copy it holds
        for f in b.files:
            retone(env, 1, f.cfpath, 1234)
    first, second = ("rec1", "rec2") if order == "worse_first" else ("rec2", "rec1")

    env.once("--source", first, "--until-idle", check_rc=0)
    first_files = {p: sha256(p) for p in env.target_files()}
    assert len(first_files) == sum(len(c.files) for c in (worse if first == "rec1" else better).values())
    env.once("--source", second, "--until-idle", check_rc=0)

    sids = {f"q-{c}" for c in QUALITY_CASES}
    if order == "worse_first":
        assert env.marks(0) == env.marks(1) == dict.fromkeys(sids, "S")
        assert outcomes(env, "rec2") == {s: [("synchronized", None)] for s in sids}
        # the replaced copies are gone from disk once the commit stopped using them
        assert [p for p in first_files if p.exists()] == []
    else:
        assert env.marks(0) == dict.fromkeys(sids, "N")
        assert env.marks(1) == dict.fromkeys(sids, "S")
        assert outcomes(env, "rec1") == {s: [("not_used", None)] for s in sids}
        # the target's copies were kept untouched
        assert {p: sha256(p) for p in env.target_files()} == first_files

    couples = target_couples(env)
    assert set(couples) == sids  # never two target couples with one sid
    for case, b in better.items():
        t = couples[b.sid]
        assert (t["description"], t["callingnr"]) == ("better", "nr-better"), case
        assert (t["state"], t["problemstatus"], t["length"]) == (b.state, b.problemstatus, b.length), case
        assert t["cfcnt"] == len(b.files), case
        assert target_shas(env, b.sid) == sorted(source_sha(env, 1, f.cfpath) for f in b.files), case
        # metadata of both copies, whichever won
        assert extdata(env, b.sid) == {("agent", "42"), ("agent", "43"), ("queue", "sales")}, case
        assert voice_tags(env, b.sid) == {("t1", 100), ("t2", 200), ("shared", 5)}, case
    assert sorted(str(p) for p in env.target_files()) == [r[1] for r in target_files(env)]
    assert env.target("SELECT count(*) FROM synchrod.pending_unlink")[0][0] == 0


def test_tie_keeps_what_the_target_has(env):
    env.add_calls(0, [spec("tie", [wav("/t/a.wav", 1)], description="one")])
    env.add_calls(1, [spec("tie", [wav("/t/b.wav", 1)], description="two")])
    retone(env, 1, "/t/b.wav", 1234)
    assert cli(env, "once", "--source", "rec2").returncode == 0
    kept = env.target_files()
    assert cli(env, "once", "--source", "rec1").returncode == 0
    assert (env.marks(0), env.marks(1)) == ({"tie": "N"}, {"tie": "S"})
    assert env.target_files() == kept
    assert target_shas(env) == [source_sha(env, 1, "/t/b.wav")]
    assert target_couples(env)["tie"]["description"] == "two"


def test_voice_tags_not_copied_when_switched_off(env):
    set_synchro(env, synchronize_voice_tags=False)
    env.add_calls(0, [spec("vt", extdata=[("k", "v")], voice_tags=[("t", 1)])])
    env.add_calls(1, [spec("vt", extdata=[("k2", "v2")], voice_tags=[("t2", 2)])])
    env.run_inprocess(only="rec1")
    env.run_inprocess(only="rec2")
    assert env.marks(1) == {"vt": "N"}
    assert extdata(env, "vt") == {("k", "v"), ("k2", "v2")}
    assert voice_tags(env, "vt") == set()
    assert env.target("SELECT count(*) FROM callrec.voice_tags")[0][0] == 0


@pytest.mark.parametrize("per_period", [50, 1])
def test_couples_of_one_call_land_in_one_target_call(env, per_period):
    set_synchro(env, calls_per_period=per_period)
    env.add_calls(0, [spec("leg1", minutes_ago=30, call_key="K"),
                      spec("leg2", minutes_ago=29, call_key="K"),
                      spec("leg3", minutes_ago=28, call_key="K"),
                      spec("solo", minutes_ago=27)])
    totals = env.run_inprocess()["rec1"]
    assert totals.synchronized == 4
    if per_period == 1:
        assert totals.cycles >= 4  # one couple per cycle
    t = target_couples(env)
    assert t["leg1"]["callid"] == t["leg2"]["callid"] == t["leg3"]["callid"]
    assert t["solo"]["callid"] != t["leg1"]["callid"]
    assert env.target("SELECT count(*) FROM callrec.calls")[0][0] == 2
    # the target call row describes the source call
    (src_len,), = env.source(0, "SELECT k.length FROM callrec.calls k JOIN callrec.couples c"
                                " ON c.callid = k.id WHERE c.sid = 'leg1'")
    (tgt_len,), = env.target("SELECT length FROM callrec.calls WHERE id = %s", t["leg1"]["callid"])
    assert tgt_len == src_len


def test_unknown_cfsize_is_ranked_by_real_bytes(env):
    env.add_calls(0, [spec("sz", [wav("/sz/a.wav", 1)])])
    env.add_calls(1, [spec("sz", [wav("/sz/b.wav", 3, size=0)])])  # recorder did not fill cfsize
    env.run_inprocess(only="rec1")
    env.run_inprocess(only="rec2")
    # rec2's file holds 3 s of audio against 1 s: more media bytes, same everything else
    assert env.marks(1) == {"sz": "S"}
    assert target_shas(env) == [source_sha(env, 1, "/sz/b.wav")]


# --- speech tags: the replay database is the master ---------------------------------

def test_speech_tags_made_identical_on_every_recorder(env):
    """Tags match by name (whatever its case), phrases by text: ids differ."""
    define_tags(env, env.target_dsn(), {"greeting": ("wave", ["hello", "good morning"]),
                                        "bye": (None, ["goodbye"]),
                                        "angry": ("fire", ["manager", "hello"])})
    define_tags(env, env.source_dsn(0), {"stale": ("x", ["old phrase"])})
    define_tags(env, env.source_dsn(1), {"GREETING": ("old icon", ["hi"])})
    env.add_calls(0, [spec("c1")])  # one source busy, one idle: both are synchronised

    env.run_inprocess()
    master = speech_tags(env, env.target_dsn())
    assert master[0] == {("greeting", "wave"), ("bye", None), ("angry", "fire")}
    assert ("angry", "hello") in master[2]
    for i in range(2):
        assert speech_tags(env, env.source_dsn(i)) == master

    # change an icon and a phrase's column, delete a tag and a phrase, add a tag and phrases
    env.target("UPDATE callrec.speech_tags SET icon = 'hand' WHERE tag_name = 'greeting'")
    env.target("UPDATE callrec.speech_phrases SET enabled = false WHERE phrase_text = 'manager'")
    env.target("DELETE FROM callrec.speech_tags WHERE tag_name = 'bye'")
    env.target("DELETE FROM callrec.speech_phrases WHERE phrase_text IN ('good morning', 'goodbye')")
    define_tags(env, env.target_dsn(), {"complaint": ("!", ["refund", "manager"])})
    env.run_inprocess()
    master = speech_tags(env, env.target_dsn())
    assert master == ({("greeting", "hand"), ("angry", "fire"), ("complaint", "!")},
                      {("hello", True), ("manager", False), ("refund", True)},
                      {("greeting", "hello"), ("angry", "manager"), ("angry", "hello"),
                       ("complaint", "refund"), ("complaint", "manager")})
    for i in range(2):
        assert speech_tags(env, env.source_dsn(i)) == master
    # identical again: the next cycles only compare digests
    before = [env.source(i, "SELECT tagid, tag_name FROM callrec.speech_tags ORDER BY 1") for i in range(2)]
    env.run_inprocess()
    assert [env.source(i, "SELECT tagid, tag_name FROM callrec.speech_tags ORDER BY 1")
            for i in range(2)] == before
