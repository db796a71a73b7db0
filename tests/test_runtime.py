"""`synchrod run` as operators drive it: sd_notify, SIGHUP and edits of the
config file applied live, an invalid edit kept out, start_at and run-now,
the per-cycle log events. Real processes, a real datagram socket."""
from __future__ import annotations

import datetime as dt
import os
import signal
import time

import pytest
import yaml

import _daemon
from _daemon import status_json, synchrod
from conftest import call

daemons = _daemon.daemons   # the fixture (bound, not imported: no unused-import warning)

pytestmark = pytest.mark.slow


def wait_marks(env, i: int, sids, mark: str = "S", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        marks = env.marks(i)
        if all(marks.get(s) == mark for s in sids):
            return
        assert time.monotonic() < deadline, {s: marks.get(s) for s in sids}
        time.sleep(0.1)


def replace_config(env, raw: dict) -> None:
    """Writes the file the way editors and config tools do: a sibling, renamed over."""
    tmp = env.config_path.with_name(".synchrod.yaml.swp")
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False))
    os.rename(tmp, env.config_path)


def test_sighup_reload_notifies_and_applies(env, daemons):
    env.write_config(logging={"level": "info", "format": "json"})
    d = daemons(notify=True)
    ready = d.wait_notify("READY=1")
    assert "STATUS=2 sources" in ready
    env.add_calls(0, [call("h1")])
    wait_marks(env, 0, ["h1"])

    # a third source appears on SIGHUP
    env.raw["sources"].append(dict(env.raw["sources"][1], sysname="rec3", group="g3"))
    env.raw["sources"][1]["enabled"] = False
    env.write_config()
    n = len(d.messages)
    d.signal(signal.SIGHUP)
    reloading = d.wait_notify("RELOADING=1", after=n)
    assert "MONOTONIC_USEC=" in reloading
    usec = int(reloading.split("MONOTONIC_USEC=")[1].split()[0])
    assert abs(usec - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 60_000_000
    d.wait_notify("READY=1", after=n + 1)
    ev = d.wait_event("config_reloaded", reason="signal")
    assert ev["added"] == ["rec3"] and ev["disabled"] == ["rec2"]
    # rec3 is rec2's recorder under another name: its calls arrive as rec3's, rec2 stays disabled
    env.add_calls(1, [call("h3")])
    deadline = time.monotonic() + 30
    while not env.target("SELECT 1 FROM synchrod.synced WHERE source = 'rec3' AND sid = 'h3'"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert not env.target("SELECT 1 FROM synchrod.synced WHERE source = 'rec2'")
    states = {s["sysname"]: s["state"] for s in status_json(env)["sources"]}
    assert states["rec2"] == "disabled" and states["rec3"] in ("waiting", "running")
    assert d.stop() == 0


def test_file_edit_applies_live_and_invalid_edit_is_kept_out(env, daemons):
    env.write_config(synchro=dict(env.raw["synchro"], sleep_period=3600),
                     logging={"level": "info", "format": "json"})
    d = daemons(notify=True)
    d.wait_notify("READY=1")
    d.wait_event("cycle", source="rec1")
    env.add_calls(0, [call("e1")])
    time.sleep(1.5)
    assert env.marks(0)["e1"] is None   # asleep for an hour

    # the period shortened by an edit applies to the sleep in progress
    raw = yaml.safe_load(yaml.safe_dump(env.raw))
    raw["synchro"]["sleep_period"] = 1
    replace_config(env, raw)
    d.wait_event("config_reloaded", reason="file changed", sleep_period=1)
    wait_marks(env, 0, ["e1"], timeout=15)

    # an invalid edit: logged with its key path, the running config is kept,
    # `synchrod status` shows it (even though the file itself is now invalid)
    bad = yaml.safe_load(yaml.safe_dump(raw))
    bad["sources"][1]["mount_path"] = "relative/mnt"
    replace_config(env, bad)
    ev = d.wait_event("config_reload_failed")
    assert ev["key"] == "sources[1].mount_path"
    env.add_calls(1, [call("e2")])
    wait_marks(env, 1, ["e2"])      # still synchronizing with the kept config
    r = synchrod(env, "status")
    assert r.returncode == 0, r.stderr
    assert "CONFIG ERROR" in r.stdout and "sources[1].mount_path" in r.stdout
    assert "rec1" in r.stdout and "rec2" in r.stdout
    assert "STATUS=" in d.wait_notify("config error: sources[1].mount_path")

    # the file fixed: error cleared
    replace_config(env, raw)
    deadline = time.monotonic() + 15
    while True:
        daemons = status_json(env)["daemons"]
        if daemons and daemons[0]["config_error"] is None:
            break
        assert time.monotonic() < deadline, daemons
        time.sleep(0.2)

    # a source removed by an edit is released and no longer synchronized
    raw["sources"] = raw["sources"][:1]
    replace_config(env, raw)
    d.wait_event("config_reloaded", removed=["rec2"])
    env.add_calls(1, [call("e3")])
    env.add_calls(0, [call("e4")])
    wait_marks(env, 0, ["e4"])
    assert env.marks(1)["e3"] is None
    # an edit that touches nothing (same content) reloads nothing
    n = len(d.events("config_reloaded"))
    env.config_path.touch()
    time.sleep(1.5)
    assert len(d.events("config_reloaded")) == n
    assert d.stop() == 0


def test_restart_only_keys_are_refused_on_reload(env, daemons):
    env.write_config(logging={"level": "info", "format": "json"})
    d = daemons(notify=True)
    d.wait_notify("READY=1")
    raw = yaml.safe_load(yaml.safe_dump(env.raw))
    raw["target"]["database"] = raw["target"]["database"] + "&application_name=other"
    replace_config(env, raw)
    ev = d.wait_event("config_reload_failed")
    assert ev["key"] == "target.database" and "restart" in ev["error"]
    assert d.stop() == 0


def test_start_at_waits_and_run_now_skips_the_wait_and_the_sleep(env, daemons):
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    env.write_config(synchro=dict(env.raw["synchro"], sleep_period=3600,
                                  start_at=later.isoformat()),
                     logging={"level": "info", "format": "json"})
    env.add_calls(0, [call("s1")])
    d = daemons(notify=True)
    d.wait_notify("READY=1")
    d.wait_event("waiting_for_start_at")
    time.sleep(1.5)
    assert env.marks(0)["s1"] is None
    r = synchrod(env, "run-now")
    assert r.returncode == 0 and "1 daemon" in r.stdout, (r.stdout, r.stderr)
    wait_marks(env, 0, ["s1"], timeout=15)
    d.wait_event("cycle", source="rec2")
    # now asleep for an hour: run-now for one source wakes that source's group
    env.add_calls(0, [call("s2")])
    env.add_calls(1, [call("s3")])
    time.sleep(1)
    r = synchrod(env, "run-now", "--source", "rec1")
    assert r.returncode == 0, r.stderr
    wait_marks(env, 0, ["s2"], timeout=15)
    time.sleep(1)
    assert env.marks(1)["s3"] is None   # rec2's group still sleeps
    assert d.stop() == 0


def test_one_cycle_event_per_source_per_cycle_and_no_password(env, daemons):
    # trust authentication ignores the password, so it can be a canary
    for src in env.raw["sources"]:
        src["database"] = src["database"].replace("postgresql://postgres@",
                                                  "postgresql://postgres:Sekr1tCanary@")
    env.raw["target"]["database"] = env.raw["target"]["database"].replace(
        "postgresql://postgres@", "postgresql://postgres:Sekr1tCanary@")
    assert "Sekr1tCanary" in yaml.safe_dump(env.raw)
    env.write_config(logging={"level": "info", "format": "json"})
    env.add_calls(0, [call(f"c{i}") for i in range(3)])
    d = daemons(notify=True)
    wait_marks(env, 0, ["c0", "c1", "c2"])
    deadline = time.monotonic() + 30
    while len([e for e in d.events("cycle") if e["source"] == "rec2"]) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    busy = [e for e in d.events("cycle") if e["source"] == "rec1" and e["taken"]]
    assert busy and busy[0]["synchronized"] == 3 and busy[0]["files"] == 3
    for e in d.events("cycle"):
        assert {"seconds", "taken", "synchronized", "failed", "state", "timestamp"} <= e.keys()
    status = synchrod(env, "status", "--json")
    assert d.stop() == 0
    assert "Sekr1tCanary" not in d.log_text()
    assert "Sekr1tCanary" not in status.stdout + status.stderr
    assert "Sekr1tCanary" not in "".join(d.messages)


def test_a_source_removed_then_added_back_is_synchronized_again(env, daemons):
    """Its group's loop ends when the group disappears; a new one starts when
    it comes back, whenever that is."""
    env.write_config(logging={"level": "info", "format": "json"})
    d = daemons(notify=True)
    d.wait_notify("READY=1")
    full = yaml.safe_load(yaml.safe_dump(env.raw))
    without = yaml.safe_load(yaml.safe_dump(env.raw))
    without["sources"] = without["sources"][:1]
    replace_config(env, without)
    d.wait_event("config_reloaded", removed=["rec2"])
    time.sleep(2.5)      # rec2's group loop wakes, finds no member and ends
    env.add_calls(1, [call("back1")])
    time.sleep(1.5)
    assert env.marks(1)["back1"] is None
    replace_config(env, full)
    d.wait_event("config_reloaded", added=["rec2"])
    wait_marks(env, 1, ["back1"], timeout=15)
    assert d.stop() == 0
