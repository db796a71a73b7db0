"""Target paths on real filesystems (SPEC §5): watermarks and balance count
the files' real sizes (a recorder's cfsize may be 0 or wrong), and a path
that is missing or cannot be written takes no new files and is reported by
`once`, the daemon's log, `synchrod status`, the monitor and its metrics."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import _daemon
import pytest
from _daemon import status_json, wait_until
from _daemon import synchrod as synchrod_cli
from _monitor import enable_monitor, start_monitor
from _sync_helpers import attempts, blob, set_target, spec, tmpfs
from test_metrics import scrape

from synchrod.fs.targets import fs_usage

daemons = _daemon.daemons


@pytest.fixture
def small_fs(tmp_path):
    """A real 8 MiB filesystem (tmpfs), as a full disk needs one."""
    with tmpfs(tmp_path / "small", "8m") as where:
        yield where


def _unknown_size(tag: str, n: int, size: int) -> list:
    """``n`` one-file calls whose files are ``size`` bytes while the
    recorder's cfsize says 0 (unknown)."""
    calls = [spec(f"{tag}{i:02d}", [blob("AUDIO", f"/{tag}/{i}.wav")], minutes_ago=90 - i)
             for i in range(n)]
    for c in calls:
        c.files[0].size = 0
    return calls


def _write_unknown(env, calls, size: int) -> None:
    env.add_calls(0, calls)
    for c in calls:
        with open(str(env.mounts[0]) + c.files[0].cfpath, "wb") as fh:
            fh.write(os.urandom(size))


def test_a_watermark_holds_with_unknown_cfsize(env, small_fs):
    _write_unknown(env, _unknown_size("u", 12, 1 << 20), 1 << 20)
    set_target(env, default_path=str(small_fs), default_watermark=50)
    totals = env.run_inprocess(only="rec1")["rec1"]
    usage = fs_usage(str(small_fs))
    # the path stops taking files at its watermark: at most one file past it
    assert usage.ratio() <= 0.5 + (1 << 20) / usage.capacity + 0.01, usage
    marks = env.marks(0)
    synced = sorted(s for s, m in marks.items() if m == "S")
    assert 2 <= len(synced) < 12, marks
    assert all(m in ("S", None) for m in marks.values()), marks
    assert totals.skipped > 0 and attempts(env) == {}   # waiting calls are not failures


def test_balance_shares_real_bytes(env, tmp_path):
    second = tmp_path / "second"
    second.mkdir()
    set_target(env, additional_paths=[{"path": str(second), "priority": 0, "balance": 1}])
    _write_unknown(env, _unknown_size("b", 20, 256 << 10), 256 << 10)
    env.run_inprocess(only="rec1")
    counts = [sum(1 for p in Path(root).rglob("*.wav")) for root in (env.target_path, second)]
    assert sum(counts) == 20 and abs(counts[0] - counts[1]) <= 1, counts


def test_a_missing_target_path_is_reported_and_skipped(env, daemons, tmp_path):
    preferred = tmp_path / "preferred"   # not created yet
    set_target(env, additional_paths=[{"path": str(preferred), "priority": 10}])
    env.add_calls(0, [spec("m1"), spec("m2", minutes_ago=59)])
    proc = env.once("--source", "rec1", "--until-idle", check_rc=0)
    assert f"target path {preferred} takes no new files: does not exist" in proc.stdout, proc.stdout
    assert env.marks(0) == {"m1": "S", "m2": "S"}
    assert all(str(p).startswith(str(env.target_path)) for p in env.target_files())

    env.raw["synchro"]["sleep_period"] = 1
    enable_monitor(env, tmp_path)
    env.add_calls(0, [spec("m3", minutes_ago=30)])
    mon = start_monitor(daemons, env)
    event = mon.daemon.wait_event("target_path_unavailable", path=str(preferred))
    assert event["problem"] == "does not exist"
    view = wait_until(lambda: next((p for p in mon.status()["target_paths"]
                                    if p["path"] == str(preferred) and p["problem"]), None),
                      20, "the monitor's view of the missing path")
    assert view["problem"] == "does not exist" and view["above_watermark"]
    metrics = wait_until(lambda: (lambda s: s if s.get("synchrod_target_path_available",
                                                       path=str(preferred)) == 0 else None)(scrape(mon)),
                         20, "synchrod_target_path_available 0")
    assert metrics.value("synchrod_target_path_available", path=str(env.target_path)) == 1
    report = wait_until(lambda: (lambda r: r if str(preferred) in r.get("target_problems", {}) else None)(
        status_json(env)), 40, "status --json naming the path")
    assert report["target_problems"][str(preferred)]["problem"] == "does not exist"
    text = synchrod_cli(env, "status").stdout
    assert f"target path {preferred} takes no new files: does not exist" in text, text

    # the path appears: it is open again and, preferred, takes the next files
    preferred.mkdir()
    mon.daemon.wait_event("target_path_available", path=str(preferred), timeout=30)
    env.add_calls(0, [spec("m4", minutes_ago=20)])
    wait_until(lambda: env.marks(0).get("m4") == "S", 30, "m4 synchronized")
    assert list(preferred.rglob("m4*")), list(preferred.rglob("*"))
    assert mon.daemon.stop() == 0


def test_an_unwritable_target_path_is_reported_and_its_share_goes_elsewhere(env, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0 or shutil.which("chattr") is None or \
            subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a directory immutable here (chattr +i as root)")
    try:
        set_target(env, additional_paths=[{"path": str(locked), "priority": 10}])
        env.add_calls(0, [spec(f"w{i}", minutes_ago=60 - i) for i in range(3)])
        proc = env.once("--source", "rec1", "--until-idle", check_rc=0)
        assert f"target path {locked} takes no new files: not writable" in proc.stdout, proc.stdout
        assert set(env.marks(0).values()) == {"S"}
        assert len(env.target_files()) == 3 and not list(locked.iterdir())
        check = synchrod_cli(env, "check")
        assert f"target path {locked}: FAILED (not writable" in check.stdout, check.stdout
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True)
