"""Automatic pruning in recording priority (SPEC §9), by a real daemon on a
real tmpfs: by age, and at critical the oldest unprotected calls on the
filesystem (younger ones too) until its use is below critical's exit; the
session events and metrics; protected calls kept; a filesystem that stays
full of what synchrod may not prune raises foreign_usage."""
from __future__ import annotations


import _daemon
from _daemon import wait_until
from _monitor import start_monitor
from _sync_helpers import blob, spec, target_files, wav
from test_metrics import scrape
from test_storage_levels import fill_to, small_fs, storage_env  # noqa: F401 - small_fs: a fixture

daemons = _daemon.daemons
KiB = 1 << 10


def _files_of(env, sid: str) -> list[str]:
    return [p for (p,) in env.target("SELECT f.cfpath FROM callrec.cfiles f JOIN callrec.couples c"
                                     " ON c.id = f.cplid WHERE c.sid = %s", sid)]


def test_age_pruning_keeps_protected_and_young_calls(env, daemons, small_fs, tmp_path):
    storage_env(env, small_fs, tmp_path, mode="recording_priority", prune_after_days=1)
    day = 24 * 60
    env.raw["sources"][0]["interval"] = "all"
    mon = start_monitor(daemons, env)
    with mon.events() as stream:
        # the daemon synchronizes them, then its next pruning round takes the old ones
        env.add_calls(0, [spec("old1", minutes_ago=3 * day), spec("old2", minutes_ago=3 * day - 1),
                          spec("oldp", [wav("/calls/oldp/0.wav"), blob("RECD", "/calls/oldp/screen.recd")],
                               minutes_ago=3 * day - 2, protected=True),
                          spec("young", minutes_ago=60)])
        wait_until(lambda: set(env.marks(0).values()) == {"S"}, 30, "all four synchronized")
        assert sorted(t for t, *_ in target_files(env, "oldp")) == ["AUDIO", "RECD"]
        pruned = mon.daemon.wait_event("storage_pruned", reason="age", timeout=30)
        assert pruned["calls"] == 2 and pruned["files"] == 2
        event = stream.wait("deletion", timeout=20)
        assert event["eventType"] == "SESSION_EVENT" and event["eventAction"] == "PRUNED"
        assert sorted(event["sids"]) == ["old1", "old2"] and event["reason"] == "age"
    assert not list(small_fs.rglob("old1*")) and not list(small_fs.rglob("old2*"))
    assert list(small_fs.rglob("oldp*")) and list(small_fs.rglob("young*"))
    assert dict(env.target("SELECT sid, deleted FROM callrec.couples")) == {
        "old1": "D", "old2": "D", "oldp": None, "young": None}
    # the protected call keeps everything but its RECD file, as CallREC's trigger allows
    wait_until(lambda: [t for t, *_ in target_files(env, "oldp")] == ["AUDIO"], 20,
               "oldp's RECD file pruned")
    assert not list(small_fs.rglob("*.recd")) and list(small_fs.rglob("oldp*"))
    assert env.target("SELECT sid, reason, requested_by, cftypes FROM synchrod.deletions ORDER BY sid") == [
        ("old1", "age", mon.daemon.name, None), ("old2", "age", mon.daemon.name, None),
        ("oldp", "age", mon.daemon.name, ["RECD"])]
    assert sorted(s for (s,) in env.target("SELECT sid FROM synchrod.tombstones")) == ["old1", "old2"]
    m = wait_until(lambda: (lambda s: s if s.get("synchrod_pruned_calls_total", reason="age") == 2
                            else None)(scrape(mon)), 20, "synchrod_pruned_calls_total 2")
    assert m.value("synchrod_pruned_bytes_total", reason="age") > 0
    assert m.value("synchrod_pruned_calls_total", reason="critical") == 0
    assert mon.daemon.stop() == 0


def test_critical_prunes_the_oldest_until_below_exit_then_foreign_usage(env, daemons, small_fs,
                                                                       tmp_path):
    storage_env(env, small_fs, tmp_path, mode="recording_priority", prune_after_days=3650)
    # every file on the small filesystem: six young calls of 256 KiB, one protected
    calls = [spec(f"c{i}", [blob("AUDIO", f"/c/{i}.wav", size=256 * KiB)], minutes_ago=120 - i)
             for i in range(6)]
    calls.insert(2, spec("cp", [blob("AUDIO", "/c/p.wav", size=256 * KiB)], minutes_ago=119,
                         protected=True))
    env.add_calls(0, calls)
    env.once("--source", "rec1", "--until-idle", check_rc=0)
    assert all(str(small_fs) in p for c in ("c0", "cp", "c5") for p in _files_of(env, c))
    mon = start_monitor(daemons, env)
    d = mon.daemon
    with mon.events() as stream:
        fill_to(small_fs, 91)
        # 4 % of 16 MiB to free: the three oldest unprotected calls (0.75 MiB)
        pruned = d.wait_event("storage_pruned", reason="critical", timeout=30)
        assert pruned["calls"] == 3, pruned
        d.wait_event("storage_threshold", eventAction="EXIT_CRITICAL_STORAGE_SPACE", timeout=20)
        gone = {s for (s,) in env.target("SELECT sid FROM synchrod.deletions")}
        assert gone == {"c0", "c1", "c2"}, gone            # the oldest three, unprotected
        assert _files_of(env, "cp") and _files_of(env, "c5")
        # now only 0.75 MiB of synchrod's is left to prune and 8 % would be needed
        fill_to(small_fs, 95)
        d.wait_event("foreign_usage", filesystem=str(small_fs), timeout=30)
        stream.wait("alarm", lambda a: a["kind"] == "foreign_usage", timeout=20)
        assert {s for (s,) in env.target("SELECT sid FROM synchrod.deletions")} == {
            "c0", "c1", "c3", "c2", "c4", "c5"}
        assert _files_of(env, "cp")                          # never pruned
        assert env.target("SELECT DISTINCT reason FROM synchrod.deletions") == [("critical",)]
    assert d.stop() == 0


def test_storage_report_plans_the_next_round_and_changes_nothing(env, small_fs, tmp_path):
    """`synchrod storage`: the filesystem measured now, its level, and the
    calls the next round would prune first (the protected one held back)."""
    from _daemon import synchrod as synchrod_cli
    import json
    storage_env(env, small_fs, tmp_path, mode="recording_priority", prune_after_days=3650)
    env.add_calls(0, [spec("s0", [blob("AUDIO", "/s/0.wav", size=256 * KiB)], minutes_ago=90),
                      spec("sp", [blob("AUDIO", "/s/p.wav", size=256 * KiB)], minutes_ago=89,
                           protected=True),
                      spec("s1", [blob("AUDIO", "/s/1.wav", size=256 * KiB)], minutes_ago=88),
                      spec("s2", [blob("AUDIO", "/s/2.wav", size=256 * KiB)], minutes_ago=87)])
    env.once("--source", "rec1", "--until-idle", check_rc=0)
    fill_to(small_fs, 91)
    proc = synchrod_cli(env, "storage", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["mode"] == "recording_priority"
    fs, = [f for f in report["filesystems"] if f["filesystem"] == str(small_fs)]
    assert fs["level"] == "critical" and fs["accepting"] and 0.9 < fs["use_ratio"] < 0.92
    assert [(c["sid"], c["reason"]) for c in report["plan"]["next"]] == [("s0", "critical"),
                                                                          ("s1", "critical"),
                                                                          ("s2", "critical")]
    assert report["plan"]["held_back"]["protected"] == 1
    text = synchrod_cli(env, "storage").stdout
    assert f"filesystem {small_fs}" in text and "level critical" in text and "s0 (critical)" in text
    assert env.target("SELECT count(*) FROM synchrod.deletions") == [(0,)]
    assert len(_files_of(env, "s0")) == 1


def test_storage_endpoint(env, daemons, small_fs, tmp_path):
    storage_env(env, small_fs, tmp_path)   # retention priority: nothing is ever pruned
    mon = start_monitor(daemons, env)
    fill_to(small_fs, 80)
    report = wait_until(lambda: (lambda r: r if r["filesystems"] and r["filesystems"][0]["level"] == "warning"
                                 else None)(mon.get_json("/api/v1/storage")), 20, "level warning")
    assert report["mode"] == "retention_priority" and report["enabled"]
    fs = report["filesystems"][0]
    assert fs["filesystem"] == str(small_fs) and fs["paths"] == [str(small_fs)] and fs["accepting"]
    assert report["plan"] == {"next": [], "held_back": {"protected": 0, "not_archived": 0,
                                                        "in_flight": 0}}
    assert mon.daemon.stop() == 0
