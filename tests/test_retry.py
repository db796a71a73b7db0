"""The operator's rescue: `synchrod retry` clears E marks (and the failure
records behind them) so the calls are tried again, and `synchrod run-now`
wakes the running daemons. Real processes, real databases and files."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

import _daemon
from _daemon import child_env, status_json, synchrod, wait_until
from conftest import REPO, SYNCHROD, call
from invariants import assert_consistent, assert_media_matches_winner

daemons = _daemon.daemons   # the fixture (bound, not imported: no unused-import warning)


def _configure(env, **synchro) -> None:
    env.raw["synchro"].update(synchro)
    env.write_config(logging={"level": "info", "format": "json"})


def _media(env, i: int, sid: str) -> Path:
    return env.mounts[i] / "calls" / sid / "0.wav"


def _break(env, i: int, sids) -> dict[str, bytes]:
    """Deletes the media of ``sids`` on source ``i``; returns their bytes."""
    kept = {}
    for sid in sids:
        path = _media(env, i, sid)
        kept[sid] = path.read_bytes()
        path.unlink()
    return kept


def _repair(env, i: int, kept: dict[str, bytes]) -> None:
    for sid, data in kept.items():
        _media(env, i, sid).write_bytes(data)


def _attempts(env, source: str = "rec1") -> dict[str, tuple[int, str, bool]]:
    """sid -> (attempts, last reason, given up)."""
    rows = env.target("SELECT sid, attempts, last_reason, next_try_at = 'infinity'"
                      " FROM synchrod.attempts WHERE source = %s", source)
    return {sid: (n, reason, gave_up) for sid, n, reason, gave_up in rows}


@pytest.mark.slow
def test_retry_clears_e_marks_of_one_call_then_of_all(env):
    _configure(env, max_attempts=1, mark_erroneous=True)
    bad = ["e1", "e2", "e3"]
    env.add_calls(0, [call(s, 60 - n) for n, s in enumerate(bad)] + [call("ok1", 50)])
    env.add_calls(1, [call("e1", 59)])       # the same call on rec2, broken there too
    kept = _break(env, 0, bad)
    kept2 = _break(env, 1, ["e1"])

    first = env.once()
    assert first.returncode == 1, (first.stdout, first.stderr)   # calls failed
    assert env.marks(0) == {"e1": "E", "e2": "E", "e3": "E", "ok1": "S"}
    assert env.marks(1) == {"e1": "E"}
    assert _attempts(env) == {s: (1, "missing_file", True) for s in bad}
    assert _attempts(env, "rec2") == {"e1": (1, "missing_file", True)}
    rec1 = next(s for s in status_json(env)["sources"] if s["sysname"] == "rec1")
    assert rec1["erroneous"] == 3

    # the fault is fixed (on rec1 only); the operator retries one call
    _repair(env, 0, kept)
    one = synchrod(env, "retry", "--source", "rec1", "--sid", "e1")
    assert one.returncode == 0, (one.stdout, one.stderr)
    assert "cleared 1 E mark" in one.stdout and "reset 1 failure record" in one.stdout, one.stdout
    assert env.marks(0) == {"e1": None, "e2": "E", "e3": "E", "ok1": "S"}
    assert set(_attempts(env)) == {"e2", "e3"}
    # another source's E mark and failure record of the same sid are left alone
    assert env.marks(1) == {"e1": "E"}
    assert _attempts(env, "rec2") == {"e1": (1, "missing_file", True)}

    again = env.once()
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert env.marks(0) == {"e1": "S", "e2": "E", "e3": "E", "ok1": "S"}
    assert set(_attempts(env)) == {"e2", "e3"}

    # a sid that is not erroneous is not touched
    s_mark = synchrod(env, "retry", "--source", "rec1", "--sid", "ok1")
    assert s_mark.returncode == 0 and "cleared 0 E mark" in s_mark.stdout, s_mark.stdout
    assert env.marks(0)["ok1"] == "S"

    # then all of the source's
    every = synchrod(env, "retry", "--source", "rec1")
    assert every.returncode == 0, (every.stdout, every.stderr)
    assert "cleared 2 E mark" in every.stdout and "reset 2 failure record" in every.stdout, \
        every.stdout
    assert env.marks(0) == {"e1": "S", "e2": None, "e3": None, "ok1": "S"}
    assert _attempts(env) == {}

    last = env.once("--source", "rec1")
    assert last.returncode == 0, (last.stdout, last.stderr)
    assert env.marks(0) == {"e1": "S", "e2": "S", "e3": "S", "ok1": "S"}
    assert env.marks(1) == {"e1": "E"}
    assert_consistent(env, {"e1", "e2", "e3", "ok1"})
    assert_media_matches_winner(env)

    # rec2's copy, once fixed and retried, is equal to what the target holds: N
    _repair(env, 1, kept2)
    synchrod(env, "retry", "--source", "rec2").check_returncode()
    env.once(check_rc=0)
    assert env.marks(1) == {"e1": "N"}
    assert _attempts(env, "rec2") == {}
    assert_consistent(env, {"e1", "e2", "e3", "ok1"})


def test_retry_unknown_source_is_a_usage_error(env):
    proc = synchrod(env, "retry", "--source", "nope")
    assert proc.returncode == 64, (proc.stdout, proc.stderr)
    assert "nope" in proc.stderr


def test_retry_with_nothing_erroneous_clears_nothing(env):
    env.add_calls(0, [call("fine")])
    env.once(check_rc=0)
    proc = synchrod(env, "retry", "--source", "rec1")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "cleared 0 E mark" in proc.stdout and "reset 0 failure record" in proc.stdout, \
        proc.stdout
    assert env.marks(0) == {"fine": "S"}
    # also before synchrod ever set up the replay database
    fresh = synchrod(env, "retry", "--source", "rec2")
    assert fresh.returncode == 0 and "cleared 0 E mark" in fresh.stdout, fresh.stdout


def test_retry_wakes_a_running_daemon(env, daemons):
    _configure(env, max_attempts=1, mark_erroneous=True, sleep_period=3600)
    env.add_calls(0, [call("bad"), call("good", 50)])
    kept = _break(env, 0, ["bad"])
    d = daemons("d")
    wait_until(lambda: env.marks(0) == {"bad": "E", "good": "S"}, 30, "the first cycle")
    d.wait_event("cycle", 10, source="rec2")

    _repair(env, 0, kept)
    proc = synchrod(env, "retry", "--source", "rec1")
    t0 = time.monotonic()
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "cleared 1 E mark" in proc.stdout and "the daemon will try them now" in proc.stdout, \
        proc.stdout
    wait_until(lambda: env.marks(0)["bad"] == "S", 5, "the retried call synchronized by the daemon",
               interval=0.05)
    print(f"\nretried call S {time.monotonic() - t0:.2f} s after `retry` (sleep_period 3600)")
    assert _attempts(env) == {}
    assert d.stop() == 0, d.tail()
    assert_consistent(env, {"bad", "good"})


def test_run_now_wakes_the_daemon(env, daemons):
    _configure(env, sleep_period=3600)
    d = daemons("d")
    d.wait_event("cycle", 30, source="rec1")
    d.wait_event("cycle", 30, source="rec2")
    env.add_calls(0, [call("r1")])
    env.add_calls(1, [call("r2")])

    # only rec1's group is woken
    one = synchrod(env, "run-now", "--source", "rec1")
    t0 = time.monotonic()
    assert one.returncode == 0, (one.stdout, one.stderr)
    assert "asked 1 daemon(s)" in one.stdout, one.stdout
    wait_until(lambda: env.marks(0)["r1"] == "S", 5, "r1 synchronized after run-now", interval=0.05)
    woken_after = time.monotonic() - t0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:   # rec2's group goes on sleeping
        assert env.marks(1)["r2"] is None
        time.sleep(0.1)

    # every source
    every = synchrod(env, "run-now")
    t1 = time.monotonic()
    assert every.returncode == 0, (every.stdout, every.stderr)
    wait_until(lambda: env.marks(1)["r2"] == "S", 5, "r2 synchronized after run-now", interval=0.05)
    print(f"\nrun-now: r1 S {woken_after:.2f} s, r2 S {time.monotonic() - t1:.2f} s later")
    assert d.stop() == 0, d.tail()
    assert_consistent(env, {"r1", "r2"})


def test_run_now_without_a_daemon(env):
    proc = synchrod(env, "run-now")
    assert proc.returncode == 69, (proc.stdout, proc.stderr)
    assert "no synchrod daemon" in proc.stdout + proc.stderr
    unknown = synchrod(env, "run-now", "--source", "nope")
    assert unknown.returncode == 64, (unknown.stdout, unknown.stderr)


def test_run_now_and_retry_do_not_count_a_running_once_as_a_daemon(env, tmp_path):
    """A `synchrod once` in progress holds its sources like a daemon, but it
    does not listen for "run now": nobody is woken, and run-now must say so."""
    env.add_calls(0, [call("held")])
    release = tmp_path / "release"
    once = subprocess.Popen(
        SYNCHROD + ["once", "-c", str(env.config_path)], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env=child_env({"SYNCHROD_FAULT": "after_load", "SYNCHROD_FAULT_ACTION": "hang",
                       "SYNCHROD_FAULT_RELEASE": str(release), "SYNCHROD_FAULT_SOURCE": "rec1"}))
    try:
        wait_until(lambda: env.target("SELECT count(*) FROM pg_stat_activity WHERE application_name"
                                      " LIKE 'synchrod:once:%'")[0][0], 30,
                   "the once process holding its sources")
        wake = synchrod(env, "run-now")
        retry = synchrod(env, "retry", "--source", "rec2")
        release.touch()
        out, err = once.communicate(timeout=60)
        assert once.returncode == 0, (out, err)
    finally:
        release.touch()
        if once.poll() is None:
            once.kill()
            once.wait(15)
    assert wake.returncode == 69, (wake.returncode, wake.stdout, wake.stderr)
    assert "the daemon will try them now" not in retry.stdout, retry.stdout
