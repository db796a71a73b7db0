"""Infrastructure faults under a real `synchrod run` process (SPEC §3.8, §7).

A recorder's PostgreSQL stopped in the middle of a cycle, a mount path that
disappears, a target path that becomes unwritable, a hung mount (media reads
that never return), and stop signals in the middle of the work. In every
case the daemon keeps running, the other source keeps syncing, no call is
marked ``E`` because of the fault, and everything catches up once the fault
clears.

Every test runs with ``max_attempts: 1`` and ``mark_erroneous: true``: a
single attempt wrongly counted against a call because of the fault would
turn into an ``E`` at once, so "no E anywhere" is a sharp check.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from _daemon import Daemon, WaitTimeout, hang_fault, wait_until
from conftest import call
from invariants import assert_consistent
from synchrod.testing import recorders
from synchrod.testing.pgserver import PgServer

IO_TIMEOUT = 2
STOP_TIMEOUT = 5


# --- helpers -------------------------------------------------------------------------

def _configure(env, **synchro) -> None:
    env.raw["synchro"].update({"sleep_period": 1, "max_attempts": 1, "mark_erroneous": True,
                               "backoff_base": 1, **synchro})
    env.write_config(logging={"level": "info", "format": "json"})


def _erroneous(env, i: int) -> list[str]:
    return sorted(sid for sid, mark in env.marks(i).items() if mark == "E")


def _assert_no_erroneous(env, *indices: int) -> None:
    for i in indices:
        assert not _erroneous(env, i), f"rec{i + 1} marked E: {_erroneous(env, i)}"


def _wait_synced(env, i: int, sids, timeout: float = 30, daemon: Daemon | None = None) -> None:
    """Waits until every sid is marked S on source ``i``; fails at once on an E."""
    sids = set(sids)

    def done():
        marks = env.marks(i)
        bad = sorted(s for s, m in marks.items() if m == "E")
        assert not bad, f"rec{i + 1} marked E: {bad}"
        if daemon is not None:
            assert daemon.alive(), f"daemon exited ({daemon.proc.returncode})\n{daemon.tail()}"
        return all(marks.get(s) == "S" for s in sids)
    try:
        wait_until(done, timeout, f"{sorted(sids)} marked S on rec{i + 1}", interval=0.2)
    except WaitTimeout as exc:
        marks = env.marks(i)
        extra = f"\n{daemon.tail()}" if daemon is not None else ""
        raise AssertionError(f"{exc}: {({s: marks.get(s) for s in sorted(sids)})}{extra}") from None


def _journaled(env, source: str) -> int:
    """Copies the source's cycle has announced and not yet settled: the cycle
    is in its media phase."""
    return env.target("SELECT count(*) FROM synchrod.pending_files WHERE source = %s", source)[0][0]


def _by_name(status: dict) -> dict[str, dict]:
    return {s["sysname"]: s for s in status.get("sources", [])}


def _calls_with_rec1_held(env, tmp_path):
    """Four calls on rec1, three on rec2, and the environment that holds
    rec1's media reads until the returned release file exists."""
    rec1 = [f"a{i}" for i in range(4)]
    rec2 = [f"b{i}" for i in range(3)]
    env.add_calls(0, [call(s, minutes_ago=90 - i) for i, s in enumerate(rec1)])
    env.add_calls(1, [call(s, minutes_ago=90 - i) for i, s in enumerate(rec2)])
    release, fault = hang_fault(tmp_path)
    return rec1, rec2, release, fault


# --- a recorder's database stopped in the middle of a cycle ----------------------------

@pytest.mark.slow
def test_recorder_database_stopped_mid_cycle(env, tmp_path):
    root = Path(tempfile.mkdtemp(prefix="synchrod-pg2-"))
    os.chmod(root, 0o755)
    server = PgServer(root / "pg")
    try:
        server.start()
        recorders.create_template(server.dsn("postgres"), "rec1", server.dsn)
        rec1_dsn = server.dsn("rec1")
        shared_source_dsn = env.source_dsn
        # every helper (add_calls, marks, invariants) now reaches rec1 on its own server
        env.source_dsn = lambda i=0: rec1_dsn if i == 0 else shared_source_dsn(i)
        env.raw["sources"][0]["database"] = rec1_dsn
        _configure(env)

        rec1, rec2, release, fault = _calls_with_rec1_held(env, tmp_path)

        with Daemon(env, extra_env=fault) as d:
            _wait_synced(env, 1, rec2, daemon=d)
            # rec1 is mid-cycle: its copies are journaled, its reads are held
            wait_until(lambda: _journaled(env, "rec1") > 0, 20, "rec1 in its media phase")
            server.stop()
            assert not server.running()
            release.touch()   # the cycle goes on into a database that is gone

            # the daemon survives the cycle that lost its database and the next
            # ones that cannot connect; rec2 keeps syncing meanwhile
            wait_until(lambda: len(d.find("cycle", source="rec1", state="down")) >= 2, 20,
                       "two rec1 cycles reporting the database down")
            more = ["b3", "b4"]
            env.add_calls(1, [call(s, minutes_ago=30) for s in more])
            _wait_synced(env, 1, rec2 + more, daemon=d)
            assert d.alive(), d.tail()
            _assert_no_erroneous(env, 1)

            server.start()
            _wait_synced(env, 0, rec1, daemon=d)
            _assert_no_erroneous(env, 0, 1)
            assert d.stop() == 0, d.tail()
        assert_consistent(env, set(rec1) | set(rec2) | set(more))
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


# --- a mount path that disappears and comes back ---------------------------------------

@pytest.mark.slow
def test_mount_path_disappears_mid_cycle(env, tmp_path):
    _configure(env)
    rec1, rec2, release, fault = _calls_with_rec1_held(env, tmp_path)
    mount, gone = env.mounts[0], env.mounts[0].with_name("mnt1.gone")

    with Daemon(env, extra_env=fault) as d:
        try:
            _wait_synced(env, 1, rec2, daemon=d)
            wait_until(lambda: _journaled(env, "rec1") > 0, 20, "rec1 in its media phase")
            os.rename(mount, gone)   # the mount vanishes under the reads in hand
            release.touch()

            # the cycle in hand finds no files, later cycles find no mount path
            d.wait_event("cycle", 20, source="rec1", state="down")
            more = ["b3", "b4"]
            env.add_calls(1, [call(s, minutes_ago=30) for s in more])
            _wait_synced(env, 1, rec2 + more, daemon=d)
            assert d.alive(), d.tail()
            _assert_no_erroneous(env, 0, 1)
            assert all(env.marks(0)[s] is None for s in rec1), env.marks(0)
        finally:
            if gone.exists():
                os.rename(gone, mount)
        _wait_synced(env, 0, rec1, daemon=d)
        _assert_no_erroneous(env, 0, 1)
        assert d.stop() == 0, d.tail()
    assert_consistent(env, set(rec1) | set(rec2) | set(more))


# --- a target path that becomes unwritable ----------------------------------------------

def _writable(directory: Path) -> bool:
    probe = directory / ".synchrod-probe"
    try:
        probe.write_bytes(b"x")
    except OSError:
        return False
    probe.unlink()
    return True


def _lock(path: Path) -> bool:
    """Makes ``path`` (recursively) unwritable: immutable as root, read-only
    directories otherwise. True when it worked."""
    if os.geteuid() == 0:
        if not shutil.which("chattr"):
            return False
        r = subprocess.run(["chattr", "-R", "+i", str(path)], capture_output=True)
        if r.returncode != 0:
            _unlock(path)
            return False
    else:
        for d in [path, *(p for p in path.rglob("*") if p.is_dir())]:
            os.chmod(d, 0o555)
    if _writable(path):
        _unlock(path)
        return False
    return True


def _unlock(path: Path) -> None:
    if os.geteuid() == 0:
        if shutil.which("chattr"):
            subprocess.run(["chattr", "-R", "-i", str(path)], capture_output=True)
    else:
        for d in [path, *(p for p in path.rglob("*") if p.is_dir())]:
            os.chmod(d, 0o755)


@pytest.mark.slow
def test_target_path_unwritable(env, tmp_path):
    probe = tmp_path / "probe"
    (probe / "sub").mkdir(parents=True)
    supported = _lock(probe)
    _unlock(probe)
    if not supported:
        pytest.skip("cannot make a directory unwritable here (no chattr +i as root, no chmod)")

    # rec2 references files on its mount (link mode): it writes nothing under the target path
    env.raw["sources"][1]["copy_files"] = False
    _configure(env)
    first1, first2 = ["a0", "a1"], ["b0"]
    env.add_calls(0, [call(s, minutes_ago=90 - i) for i, s in enumerate(first1)])
    env.add_calls(1, [call(s, minutes_ago=90) for s in first2])

    with Daemon(env) as d:
        _wait_synced(env, 0, first1, daemon=d)
        _wait_synced(env, 1, first2, daemon=d)
        before = {str(p) for p in env.target_files()}
        try:
            assert _lock(env.target_path), "target path still writable"
            seen = len(d.find("cycle", source="rec1"))
            later1, later2 = ["a2", "a3", "a4"], ["b1", "b2"]
            env.add_calls(0, [call(s, minutes_ago=60 - i) for i, s in enumerate(later1)])
            env.add_calls(1, [call(s, minutes_ago=60 - i) for i, s in enumerate(later2)])
            _wait_synced(env, 1, first2 + later2, daemon=d)
            # two rec1 cycles that took the new calls and could not write them
            # (or an E: a wrongly counted attempt leaves no candidate for a second cycle)
            wait_until(lambda: _erroneous(env, 0) or sum(
                1 for e in d.find("cycle", source="rec1")[seen:] if e.get("taken")) >= 2, 20,
                "two rec1 cycles meeting the unwritable target")
            assert d.alive(), d.tail()
            _assert_no_erroneous(env, 0, 1)
            marks = env.marks(0)
            assert all(marks[s] is None for s in later1), marks
            assert {str(p) for p in env.target_files()} == before
        finally:
            _unlock(env.target_path)
        _wait_synced(env, 0, first1 + later1, daemon=d)
        _assert_no_erroneous(env, 0, 1)
        assert d.stop() == 0, d.tail()
    assert_consistent(env, set(first1) | set(first2) | set(later1) | set(later2))


# --- a hung mount ------------------------------------------------------------------------------

# (a mount whose reads hang for real, in the kernel: tests/test_hung_mount.py)

@pytest.mark.slow
def test_sigterm_stops_in_bounded_time_while_a_source_is_stalled(env, tmp_path):
    _configure(env, io_timeout=IO_TIMEOUT, stop_timeout=STOP_TIMEOUT)
    rec1 = [f"a{i}" for i in range(3)]
    rec2 = ["b0"]
    env.add_calls(0, [call(s, minutes_ago=90 - i) for i, s in enumerate(rec1)])
    env.add_calls(1, [call(s, minutes_ago=90) for s in rec2])
    release, fault = hang_fault(tmp_path)

    with Daemon(env, extra_env=fault, notify=True) as d:
        d.wait_notify("READY=1")
        _wait_synced(env, 1, rec2, daemon=d)
        d.wait_event("source_stalled", IO_TIMEOUT + 8, source="rec1")
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(STOP_TIMEOUT + 10)
        elapsed = time.monotonic() - t0
        assert rc == 0, (rc, elapsed, d.tail())
        assert d.notified("STOPPING=1"), d.datagrams
    release.touch()
    _assert_no_erroneous(env, 0, 1)
    # the abandoned cycle is repaired by the next run
    env.once("--until-idle", check_rc=0)
    _assert_no_erroneous(env, 0, 1)
    assert set(env.marks(0).values()) == {"S"}
    assert_consistent(env, set(rec1) | set(rec2))


# --- stop signals in the middle of the work ---------------------------------------------------

def _bulk(env, n: int, size: int = 128 << 10) -> set[str]:
    sids = [f"m{i:03d}" for i in range(n)]
    env.add_calls(0, [call(s, minutes_ago=1000 - i, file_specs=[
        recorders.FileSpec("AUDIO", f"/calls/{s}/0.wav", content="bytes", size=size)])
        for i, s in enumerate(sids)])
    return set(sids)


@pytest.mark.slow
def test_sigterm_during_copying_stops_cleanly(env, tmp_path):
    _configure(env, calls_per_period=400, stop_timeout=STOP_TIMEOUT)
    sids = _bulk(env, 400)

    with Daemon(env, notify=True) as d:
        d.wait_notify("READY=1")
        # the first chunk is marked while the next ones are being copied
        wait_until(lambda: "S" in env.marks(0).values(), 30, "first calls marked", interval=0.02)
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(STOP_TIMEOUT + 10)
        assert rc == 0, d.tail()
        assert d.find("stopped"), d.tail()
        assert d.notified("STOPPING=1"), d.datagrams
    _assert_no_erroneous(env, 0)
    env.once("--until-idle", check_rc=0)
    assert set(env.marks(0).values()) == {"S"}
    assert_consistent(env, sids)


@pytest.mark.slow
def test_second_signal_exits_at_once(env, tmp_path):
    _configure(env, calls_per_period=400, stop_timeout=STOP_TIMEOUT)
    sids = _bulk(env, 400)
    # 150 reads pass, then the reads hang: one chunk of 100 calls is committed
    # and marked, the next is half copied. A graceful stop would wait up to
    # stop_timeout for it; a second signal must not.
    release, fault = hang_fault(tmp_path, skip=150)

    with Daemon(env, extra_env=fault, notify=True) as d:
        d.wait_notify("READY=1")
        wait_until(lambda: sum(m == "S" for m in env.marks(0).values()) >= 100, 30,
                   "the first chunk marked", interval=0.1)
        d.signal(signal.SIGTERM)
        time.sleep(0.2)
        d.signal(signal.SIGINT)
        t0 = time.monotonic()
        d.wait_exit(2.5)
        elapsed = time.monotonic() - t0
        assert elapsed <= 2.5, elapsed
    release.touch()
    _assert_no_erroneous(env, 0)
    env.once("--until-idle", check_rc=0)
    assert set(env.marks(0).values()) == {"S"}
    assert_consistent(env, sids)
