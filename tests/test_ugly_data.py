"""What real installations hold (SPEC §2, §3.5, §3.8): a recorder restored
from a backup that reuses couple ids, calls split between recorders and
batches, SQL_ASCII databases of some codepage, values out of range, and a
replay database in another encoding. Each on the faithful CallREC schema."""
from __future__ import annotations

import datetime as dt

import pytest

from _sync_helpers import (attempts, define_tags, expire_backoff, outcomes, set_source, set_synchro,
                           sha256, source_sha, spec, target_couples, target_shas, wav)
from conftest import TEMPLATE_SQL_ASCII
from synchrod.testing import recorders
from synchrod.testing.recorders import FileSpec


def _restore_from_backup(env, i: int, sids: list[str]) -> None:
    """As if the recorder were restored from a backup taken before ``sids``
    were recorded: they are gone and their ids will be handed out again."""
    first_couple, first_call = env.source(i, "SELECT min(id), min(callid) FROM callrec.couples"
                                             " WHERE sid = ANY(%s)", sids)[0]
    env.source(i, "DELETE FROM callrec.couples WHERE sid = ANY(%s)", sids)
    env.source(i, "DELETE FROM callrec.calls k WHERE NOT EXISTS"
                  " (SELECT 1 FROM callrec.couples c WHERE c.callid = k.id)")
    env.source(i, "SELECT setval('callrec.seq_couples', %s, false), setval('callrec.seq_calls', %s, false)",
               first_couple, first_call)


def test_a_restored_recorder_reusing_ids_inherits_nothing(env):
    set_synchro(env, backoff_base=3600)
    env.add_calls(1, [spec("merged", [wav("/m/b.wav", 2)])])       # rec2 holds the better copy
    env.run_inprocess(only="rec2")
    old = env.add_calls(0, [spec("lost-s", minutes_ago=50, call_key="call-1"),
                            spec("lost-s2", minutes_ago=49, call_key="call-1"),
                            spec("lost-failed", [FileSpec("AUDIO", "/nowhere.wav", content="none")],
                                 minutes_ago=48)])
    env.run_inprocess(only="rec1", until_idle=False)
    assert env.marks(0) == {"lost-s": "S", "lost-s2": "S", "lost-failed": None}
    assert attempts(env) == {"lost-failed": (1, "missing_file")}
    lost_call = target_couples(env)["lost-s"]["callid"]

    _restore_from_backup(env, 0, ["lost-s", "lost-s2", "lost-failed"])
    new = env.add_calls(0, [spec("merged", [wav("/m/a.wav", 1)], minutes_ago=30),   # a worse copy
                            spec("fresh", minutes_ago=29, call_key="call-1"),
                            spec("retaken", minutes_ago=28)])
    # the new calls really got the lost ones' ids
    assert [new[s] for s in ("merged", "fresh", "retaken")] == \
        [old[s] for s in ("lost-s", "lost-s2", "lost-failed")]

    totals = env.run_inprocess(only="rec1", until_idle=False)["rec1"]
    # "retaken" reuses the id of a call in back-off, yet is taken at once
    assert (totals.taken, totals.synchronized, totals.not_used) == (3, 2, 1), totals
    # "merged" sits on the id that earned S: it must get its own N
    assert env.marks(0) == {"merged": "N", "fresh": "S", "retaken": "S"}
    t = target_couples(env)
    # "fresh" reuses the call id of "lost-s"'s call: it must not join that target call
    assert t["fresh"]["callid"] != lost_call
    assert t["lost-s"]["callid"] == t["lost-s2"]["callid"] == lost_call
    assert attempts(env) == {}
    # history keeps what each call was, under its own sid
    assert outcomes(env)["lost-failed"] == [("failed", "missing_file")]
    assert outcomes(env)["retaken"] == [("synchronized", None)]


def test_a_restored_recorder_gets_a_fresh_attempt_count(env):
    set_synchro(env, max_attempts=2, mark_erroneous=True, backoff_base=1)
    env.add_calls(0, [spec("bad", [FileSpec("AUDIO", "/gone.wav", content="none")])])
    env.run_inprocess(until_idle=False, only="rec1")
    assert attempts(env) == {"bad": (1, "missing_file")}
    _restore_from_backup(env, 0, ["bad"])
    env.add_calls(0, [spec("also-bad", [FileSpec("AUDIO", "/gone2.wav", content="none")])])
    expire_backoff(env)
    env.run_inprocess(until_idle=False, only="rec1")
    # its first failure, not the second of the call whose id it took
    assert env.marks(0) == {"also-bad": None}
    assert attempts(env) == {"also-bad": (1, "missing_file")}


def test_couples_of_one_call_land_in_one_target_call_across_recorders(env):
    """rec1 recorded legs 1 and 2 of a call, rec2 legs 2 and 3 (leg 2 on
    both): whichever recorder comes first, and even one leg per batch, the
    target has one call with the three legs."""
    set_synchro(env, calls_per_period=1)
    env.add_calls(1, [spec("leg2", minutes_ago=30, call_key="B", cplcnt=3),
                      spec("leg3", minutes_ago=29, call_key="B", cplcnt=3)])
    env.add_calls(0, [spec("leg1", minutes_ago=31, call_key="A", cplcnt=3),
                      spec("leg2", minutes_ago=30, call_key="A", cplcnt=3)])
    env.run_inprocess(only="rec2")   # leg2, leg3 first: one target call
    env.run_inprocess(only="rec1")   # leg1 joins it through leg2; leg2 merges
    t = target_couples(env)
    assert t["leg1"]["callid"] == t["leg2"]["callid"] == t["leg3"]["callid"]
    assert env.target("SELECT count(*), max(cplcnt), max(realcplcnt) FROM callrec.calls") == [(1, 3, 3)]
    assert (env.marks(0), env.marks(1)) == ({"leg1": "S", "leg2": "N"}, {"leg2": "S", "leg3": "S"})


def _ascii_env(make_env, **source):
    env = make_env(templates={"rec1": TEMPLATE_SQL_ASCII}, nsources=1)
    set_source(env, 0, **source)
    return env


def test_a_latin1_sql_ascii_recorder(make_env):
    """José stored as Latin-1 bytes in a SQL_ASCII database, in a name, an
    extdata value and the file's path: decoded with the source's
    text_encoding, stored as text on the replay database, the file found."""
    env = _ascii_env(make_env, text_encoding="latin1")
    env.add_calls(0, [spec("jose", [wav("/calls/José/müller.wav")], description="señal",
                           extdata=[("agent", "Müller")], columns={"callingpartyname": "José"})],
                  client_encoding="LATIN1")
    # the database really holds Latin-1 bytes
    assert env.source(0, "SELECT encode(convert_to(callingpartyname, 'SQL_ASCII'), 'hex')"
                         " FROM callrec.couples") == [("4a6f73e9",)]
    totals = env.run_inprocess()["rec1"]
    assert (totals.state, totals.synchronized) == ("ok", 1), totals
    assert env.target("SELECT callingpartyname, description FROM callrec.couples") == [("José", "señal")]
    assert env.target("SELECT value FROM callrec.couple_extdata") == [("Müller",)]
    raw = env.mounts[0] / "calls" / "Jos\udce9" / "m\udcfcller.wav"  # the bytes on disk
    assert target_shas(env) == [sha256(raw)]


def test_undecodable_text_and_out_of_range_values_fail_their_own_call(make_env):
    """A cp1250 recorder: Czech names decode; a byte cp1250 does not define
    (0x81) and a year-10000 stop time each fail their call with a clear
    reason; the rest of the batch goes through."""
    env = _ascii_env(make_env, text_encoding="cp1250")
    env.add_calls(0, [spec("czech", columns={"callingpartyname": "Žluťoučký kůň"}, minutes_ago=50)],
                  client_encoding="WIN1250")
    env.add_calls(0, [spec("bad-byte", columns={"calledpartyname": "a\x81b"}, minutes_ago=49)],
                  client_encoding="LATIN1")
    far = dt.datetime(9999, 12, 31, 23, 59, 50, tzinfo=dt.timezone.utc)
    env.add_calls(0, [spec("fine", minutes_ago=48),
                      recorders.CallSpec(sid="y10k", start=far, files=[
                          FileSpec("AUDIO", "/y10k.wav")],
                          columns={"stop_ts": "10000-01-01 00:00:10+00"})])
    totals = env.run_inprocess(until_idle=False)["rec1"]
    assert (totals.taken, totals.synchronized, totals.failed) == (4, 2, 2), totals
    assert env.marks(0) == {"czech": "S", "bad-byte": None, "fine": "S", "y10k": None}
    assert env.target("SELECT callingpartyname FROM callrec.couples WHERE sid = 'czech'") == \
        [("Žluťoučký kůň",)]
    failed = {sid: (reason, detail) for sid, reason, detail in env.target(
        "SELECT sid, last_reason, last_detail FROM synchrod.attempts")}
    assert failed["bad-byte"][0] == "bad_text"
    assert "calledpartyname" in failed["bad-byte"][1] and "\\x81" in failed["bad-byte"][1]
    assert "cp1250" in failed["bad-byte"][1]
    assert failed["y10k"][0] == "out_of_range" and "stop_ts" in failed["y10k"][1]


def test_sql_ascii_recorder_without_text_encoding(make_env):
    """Without text_encoding the text is taken as UTF-8: Latin-1 bytes fail
    that call only, valid UTF-8 bytes go through."""
    env = _ascii_env(make_env)
    env.add_calls(0, [spec("utf8", columns={"callingpartyname": "Zoë"})], client_encoding="UTF8")
    env.add_calls(0, [spec("latin", columns={"callingpartyname": "Zoë"}, minutes_ago=59)],
                  client_encoding="LATIN1")
    totals = env.run_inprocess(until_idle=False)["rec1"]
    assert (totals.synchronized, totals.failed) == (1, 1), totals
    assert env.marks(0) == {"utf8": "S", "latin": None}
    assert attempts(env) == {"latin": (1, "bad_text")}


def test_speech_tags_reach_a_codepage_recorder_in_its_codepage(make_env):
    env = _ascii_env(make_env, text_encoding="cp1250")
    define_tags(env, env.target_dsn(), {"Žádost": ("ikona", ["vrácení peněz"]),
                                        "日本": (None, ["こんにちは"])})  # not storable in cp1250
    env.run_inprocess()
    import psycopg
    with psycopg.connect(env.source_dsn(0)) as conn:
        conn.execute("SET client_encoding TO 'WIN1250'")
        assert conn.execute("SELECT tag_name, icon FROM callrec.speech_tags").fetchall() == \
            [("Žádost", "ikona")]
        assert conn.execute("SELECT phrase_text FROM callrec.speech_phrases").fetchall() == \
            [("vrácení peněz",)]
    ids = env.source(0, "SELECT tagid FROM callrec.speech_tags")
    env.run_inprocess()   # in sync: nothing rewritten although the bytes differ from the master's
    assert env.source(0, "SELECT tagid FROM callrec.speech_tags") == ids


def test_text_the_replay_database_encoding_cannot_hold(make_env, cluster):
    name = "synchrod_test_tpl_latin1"
    recorders.create_template(cluster.admin_dsn, name, cluster.dsn, "current", "LATIN1")
    try:
        env = make_env(templates={"replay": name}, nsources=1)
        env.add_calls(0, [spec("ok", columns={"callingpartyname": "José"}),
                          spec("czech", columns={"callingpartyname": "Žofie"}, minutes_ago=59)])
        totals = env.run_inprocess(until_idle=False)["rec1"]
        assert (totals.synchronized, totals.failed) == (1, 1), totals
        (reason, detail), = env.target("SELECT last_reason, last_detail FROM synchrod.attempts")
        assert reason == "bad_text" and "LATIN1" in detail and "callingpartyname" in detail
        assert env.target("SELECT callingpartyname FROM callrec.couples") == [("José",)]
    finally:
        env.cleanup()
        recorders.drop_database(cluster.admin_dsn, name)


def test_a_null_or_unsafe_cfpath_fails_its_call(env):
    env.add_calls(0, [spec("nopath", [FileSpec("AUDIO", None, size=10, content="none")]),
                      spec("ok", minutes_ago=59)])
    totals = env.run_inprocess(until_idle=False)["rec1"]
    assert (totals.synchronized, totals.failed) == (1, 1), totals
    assert attempts(env) == {"nopath": (1, "unsafe_path")}
    assert target_shas(env) == [source_sha(env, 0, "/calls/ok/0.wav")]


@pytest.mark.parametrize("cfsize", [None, 0])
def test_a_file_larger_than_the_replay_cfsize_column(env, cfsize):
    """cfiles.cfsize is an integer in CallREC: a file of 2 GiB or more cannot
    be described there; it fails its call instead of the batch."""
    big = env.mounts[0] / "big" / "huge.wav"
    big.parent.mkdir()
    with open(big, "wb") as fh:
        fh.truncate(2**31)  # sparse: no disk used
    env.add_calls(0, [spec("huge", [FileSpec("AUDIO", "/big/huge.wav", size=cfsize or 0, content="none")]),
                      spec("ok", minutes_ago=59)])
    totals = env.run_inprocess(until_idle=False)["rec1"]
    assert (totals.synchronized, totals.failed) == (1, 1), totals
    (reason, detail), = env.target("SELECT last_reason, last_detail FROM synchrod.attempts")
    assert reason == "out_of_range" and str(2**31) in detail
