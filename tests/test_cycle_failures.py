"""SPEC §3.8: failures of one call (reason, back-off, retry, E) and of a
whole source (mount missing or not a mount point, database unreachable)."""
from __future__ import annotations

import time

import pytest

from _sync_helpers import (attempts, expire_backoff, outcomes, set_source, set_synchro, source_sha,
                           spec, target_couples, target_shas, wav)
from synchrod.testing.recorders import FileSpec, write_wav


def _missing(sid: str, **kw):
    return spec(sid, [FileSpec("AUDIO", f"/calls/{sid}.wav", content="none")], **kw)


def test_missing_file_fails_only_its_call(env):
    env.add_calls(0, [spec("a", minutes_ago=50), _missing("lost", minutes_ago=40),
                      spec("b", [wav("/b/0.wav"), wav("/b/1.wav", 2)], minutes_ago=30)])
    totals = env.run_inprocess(until_idle=False)["rec1"]
    assert (totals.taken, totals.synchronized, totals.failed) == (3, 2, 1)
    assert env.marks(0) == {"a": "S", "lost": None, "b": "S"}
    assert outcomes(env)["lost"] == [("failed", "missing_file")]
    assert attempts(env) == {"lost": (1, "missing_file")}
    assert set(target_couples(env)) == {"a", "b"}
    assert len(env.target_files()) == 3


def test_backoff_then_retry(env):
    # backoff_base is 1 s in the test configuration
    env.add_calls(0, [_missing("late")])
    env.run_inprocess(until_idle=False)
    ((delay,),) = env.target("SELECT extract(epoch FROM next_try_at - updated_at)"
                             " FROM synchrod.attempts")
    assert 0.5 <= float(delay) <= 1.5  # base · 2^0
    time.sleep(1.2)  # (that a call in back-off is not taken: test_cycle_rules.py)
    retried = env.run_inprocess(until_idle=False)["rec1"]
    assert (retried.taken, retried.failed) == (1, 1)
    assert attempts(env) == {"late": (2, "missing_file")}
    ((delay,),) = env.target("SELECT extract(epoch FROM next_try_at - updated_at)"
                             " FROM synchrod.attempts")
    assert 1.5 <= float(delay) <= 2.5  # exponential: base · 2^1

    write_wav(env.mounts[0] / "calls/late.wav", 1)
    time.sleep(2.2)
    env.run_inprocess(until_idle=False)
    assert env.marks(0) == {"late": "S"}
    assert attempts(env) == {}
    assert target_shas(env) == [source_sha(env, 0, "/calls/late.wav")]
    assert [o for o, _ in outcomes(env)["late"]] == ["failed", "failed", "synchronized"]


def test_marked_erroneous_after_max_attempts(env):
    set_synchro(env, mark_erroneous=True, max_attempts=3)
    env.add_calls(0, [_missing("bad"), spec("good")])
    for n in (1, 2):
        env.run_inprocess(until_idle=False)
        assert env.marks(0)["bad"] is None and attempts(env)["bad"] == (n, "missing_file")
        expire_backoff(env)
    third = env.run_inprocess(until_idle=False)["rec1"]
    assert (third.taken, third.erroneous) == (1, 1)
    assert env.marks(0) == {"bad": "E", "good": "S"}
    assert [o for o, _ in outcomes(env)["bad"]] == ["failed", "failed", "erroneous"]
    # E is not a candidate any more
    expire_backoff(env)
    assert env.run_inprocess()["rec1"].taken == 0
    assert "bad" not in target_couples(env)


def test_without_mark_erroneous_it_keeps_backing_off(env):
    set_synchro(env, mark_erroneous=False, max_attempts=2, backoff_base=1000)
    env.add_calls(0, [_missing("bad")])
    for n in range(1, 5):
        totals = env.run_inprocess(until_idle=False)["rec1"]
        assert (totals.taken, totals.failed, totals.erroneous) == (1, 1, 0)
        assert env.marks(0) == {"bad": None}
        assert attempts(env) == {"bad": (n, "missing_file")}
        expire_backoff(env) if n < 4 else None
    # 1000 · 2^3 s would be 8000 s: capped at one hour
    ((delay,),) = env.target("SELECT extract(epoch FROM next_try_at - updated_at) FROM synchrod.attempts")
    assert 3599 <= float(delay) <= 3601


def _break_source(env, how: str) -> None:
    if how == "mount_missing":
        set_source(env, 0, mount_path=str(env.tmp / "no-such-mount"))
    elif how == "not_a_mount_point":
        set_source(env, 0, require_mount=True)  # a plain directory of the test
    elif how == "database_unreachable":
        set_source(env, 0, database=env.cluster.dsn("synchrod_no_such_database"))


@pytest.mark.parametrize("how", ["mount_missing", "not_a_mount_point", "database_unreachable"])
def test_unavailable_source_is_skipped(env, how):
    env.add_calls(0, [spec("r1a"), spec("r1b")])
    env.add_calls(1, [spec("r2a"), spec("r2b")])
    _break_source(env, how)
    proc = env.once("--until-idle")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert env.marks(0) == {"r1a": None, "r1b": None}
    assert env.marks(1) == {"r2a": "S", "r2b": "S"}
    assert set(target_couples(env)) == {"r2a", "r2b"}
    assert attempts(env, "rec1") == {}  # not the calls' fault: no attempt counted
    # the failure is reported
    row = next(line for line in proc.stdout.splitlines() if line.startswith("rec1 "))
    assert "down" in row.split()
    error = next(line for line in proc.stdout.splitlines() if line.startswith("rec1:"))
    if how == "database_unreachable":
        assert "database" in error.lower(), error
    else:
        assert env.source_cfg(0)["mount_path"] in error, error
    # once repaired, the source catches up
    set_source(env, 0, mount_path=str(env.mounts[0]), require_mount=False,
               database=env.source_dsn(0))
    env.once("--until-idle", check_rc=0)
    assert env.marks(0) == {"r1a": "S", "r1b": "S"}
