"""Kill synchrod (SIGKILL) between every pair of steps of a cycle, run it
again, and prove the next cycles repair everything: no duplicate, no lost
call, no orphan or temporary file, no mark without a target row."""
from __future__ import annotations

import pytest

from conftest import call
from invariants import assert_consistent, assert_media_matches_winner
from _sync_helpers import define_phrases
from synchrod.faults import POINTS

SIDS = [f"c{i:02d}" for i in range(12)]


def _populate(env) -> set[str]:
    define_phrases(env, env.target_dsn(), "t1")  # voice tags map by phrase text
    env.add_calls(0, [call(sid, minutes_ago=100 - i, files=1 + i % 2,
                           extdata=[("agent", f"a{i}")], voice_tags=[("t1", i * 10)])
                      for i, sid in enumerate(SIDS)])
    # rec2 holds half of the same calls in better quality (three files) and one of its own
    env.add_calls(1, [call(sid, minutes_ago=100 - i, files=3, extdata=[("queue", "q2")])
                      for i, sid in enumerate(SIDS[:6])] + [call("only2", minutes_ago=5)])
    return set(SIDS) | {"only2"}


def _crash(env, point: str, *args: str) -> None:
    proc = env.once(*args, env={"SYNCHROD_FAULT": point})
    assert proc.returncode == -9, (point, proc.returncode, proc.stdout, proc.stderr[-2000:])


def _recover(env, expected: set[str]) -> None:
    proc = env.once("--until-idle")
    assert proc.returncode == 0, (proc.stdout, proc.stderr[-2000:])
    assert_consistent(env, expected)
    assert_media_matches_winner(env)
    marks1 = env.marks(0)
    marks2 = env.marks(1)
    # rec2's three-file copies are better: they win whatever happened before
    for sid in SIDS[:6]:
        assert {marks1[sid], marks2[sid]} <= {"S", "N"}
        assert env.target("SELECT cfcnt FROM callrec.couples WHERE sid = %s", sid) == [(3,)]
        keys = {k for k, in env.target(
            "SELECT e.key FROM callrec.couple_extdata e JOIN callrec.couples c ON c.id = e.cplid"
            " WHERE c.sid = %s", sid)}
        assert keys == {"agent", "queue"}, (sid, keys)
    assert all(marks1[sid] == "S" for sid in SIDS[6:])


@pytest.mark.parametrize("point", POINTS)
def test_kill_during_first_delivery(env, point):
    expected = _populate(env)
    env.write_config(synchro={**env.raw["synchro"], "calls_per_period": 5})
    _crash(env, point)
    _recover(env, expected)


@pytest.mark.parametrize("point", POINTS)
def test_kill_during_replacement(env, point):
    """rec1's copies are on the target; rec2's better copies replace them and
    the process dies at ``point``: old files must go only after the commit."""
    expected = _populate(env)
    assert env.once("--source", "rec1", "--until-idle").returncode == 0
    before = {str(p) for p in env.target_files()}
    _crash(env, point, "--source", "rec2")
    # until the replacement commits, rec1's files are all still there
    committed = env.target("SELECT count(*) FROM synchrod.synced WHERE source = 'rec2'")[0][0]
    if committed == 0:
        assert before <= {str(p) for p in env.target_files()}
    _recover(env, expected)
    # rec1 delivered first and keeps its S; rec2's better copies replaced its media
    assert all(env.marks(0)[sid] == "S" for sid in SIDS)
    assert all(env.marks(1)[sid] == "S" for sid in SIDS[:6])


def test_unexpected_exception_is_repaired(env):
    expected = _populate(env)
    proc = env.once(env={"SYNCHROD_FAULT": "after_copy", "SYNCHROD_FAULT_ACTION": "raise"})
    assert proc.returncode != 0
    assert "FaultInjected" in proc.stderr
    _recover(env, expected)


def test_repeated_kills_converge(env):
    """Several crashes in a row at different points, then one clean run."""
    expected = _populate(env)
    env.write_config(synchro={**env.raw["synchro"], "calls_per_period": 3})
    kills = 0
    for point in ("after_commit", "copy_partial", "after_sync", "after_mark", "after_copy"):
        # a cycle that only re-marks what a crash left committed copies
        # nothing, so a copy point may not be reached: it then ends normally
        proc = env.once(env={"SYNCHROD_FAULT": point})
        assert proc.returncode in (-9, 0), (point, proc.returncode, proc.stderr[-2000:])
        kills += proc.returncode == -9
    assert kills >= 3
    _recover(env, expected)


@pytest.mark.parametrize("point", ["after_copy", "after_sync", "after_commit", "after_mark"])
def test_kill_inside_the_pipeline(env, point):
    """A large batch is worked in chunks: one chunk is committed while the next
    is copied. A kill at the second chunk's step leaves one chunk done, one
    half-way and one untouched; the next run repairs all three."""
    sids = {f"p{i:03d}" for i in range(130)}
    env.add_calls(0, [call(s, minutes_ago=500 - i) for i, s in enumerate(sorted(sids))])
    env.write_config(synchro={**env.raw["synchro"], "calls_per_period": 200})
    proc = env.once("--source", "rec1", env={"SYNCHROD_FAULT": point, "SYNCHROD_FAULT_SKIP": "1"})
    assert proc.returncode == -9, proc.stderr[-2000:]
    marked = sum(1 for m in env.marks(0).values() if m)
    on_target = env.target("SELECT count(*) FROM callrec.couples")[0][0]
    # chunks of 50: the kill lands at the second chunk's step; the first chunk's marks go on
    # while the second one is made durable and committed, so they may not be done yet
    expected = {"after_copy": ({0, 50}, {0, 50}), "after_sync": ({0, 50}, {50}),
                "after_commit": ({0, 50}, {100}), "after_mark": ({100}, {100})}[point]
    assert marked in expected[0] and on_target in expected[1], (marked, on_target)
    env.once("--until-idle", check_rc=0)
    assert_consistent(env, sids, nsources=1)
    assert set(env.marks(0).values()) == {"S"}


def test_a_call_commits_whole_though_its_couples_are_apart_in_the_batch(env):
    """The couples of one source call share a chunk: killed after the first
    chunk's commit, the target holds both couples of a call whose second couple
    came last in the batch, in one target call, or neither."""
    sids = [f"q{i:03d}" for i in range(130)]
    specs = [call(s, minutes_ago=500 - i) for i, s in enumerate(sids)]
    specs.insert(0, call("w-first", minutes_ago=600, call_key="whole"))
    specs.append(call("w-last", minutes_ago=100, call_key="whole"))
    env.add_calls(0, specs)
    env.write_config(synchro={**env.raw["synchro"], "calls_per_period": 200})
    proc = env.once("--source", "rec1", env={"SYNCHROD_FAULT": "after_commit"})
    assert proc.returncode == -9, proc.stderr[-2000:]
    rows = env.target("SELECT sid::text, callid FROM callrec.couples WHERE sid::text LIKE 'w-%'")
    assert sorted(r[0] for r in rows) == ["w-first", "w-last"]
    assert len({r[1] for r in rows}) == 1
    assert env.target("SELECT count(*) FROM callrec.couples")[0][0] < 132   # only a chunk
    env.once("--until-idle", check_rc=0)
    assert_consistent(env, set(sids) | {"w-first", "w-last"}, nsources=1)
    assert set(env.marks(0).values()) == {"S"}
