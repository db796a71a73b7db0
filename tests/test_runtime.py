"""`synchrod run` as operators drive it: sd_notify, SIGHUP and edits of the
config file applied live, an invalid edit kept out, start_at and run-now,
the per-cycle log events. Real processes, a real datagram socket."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import time

import pytest
import yaml

from conftest import REPO, SYNCHROD, call

pytestmark = pytest.mark.slow


class Daemon:
    """A `synchrod run` subprocess with its notify socket and JSON log."""

    def __init__(self, env, tmp_path, extra_env: dict | None = None):
        self.env = env
        self.sock_path = str(tmp_path / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self.log_path = tmp_path / "daemon.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            SYNCHROD + ["run", "-c", str(env.config_path)], cwd=REPO,
            env=dict(os.environ, NOTIFY_SOCKET=self.sock_path, **(extra_env or {})),
            stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                return self.messages

    def wait_message(self, needle: str, after: int = 0, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            for m in self.messages[after:]:
                if needle in m:
                    return m
            assert self.proc.poll() is None, self.log_text()
        raise AssertionError(f"no {needle!r} in {self.messages[after:]}")

    def events(self, name: str | None = None) -> list[dict]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if name is None or ev.get("event") == name:
                out.append(ev)
        return out

    def wait_event(self, name: str, timeout: float = 30, **match) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in self.events(name):
                if all(ev.get(k) == v for k, v in match.items()):
                    return ev
            assert self.proc.poll() is None, self.log_text()
            time.sleep(0.1)
        raise AssertionError(f"no {name} {match} in log:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.sock.close()
        return self.proc.returncode


@pytest.fixture
def daemon(env, tmp_path):
    started = []

    def start(**kw) -> Daemon:
        d = Daemon(env, tmp_path, **kw)
        started.append(d)
        return d
    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


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


def status_json(env) -> dict:
    r = subprocess.run(SYNCHROD + ["status", "--json", "-c", str(env.config_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_sighup_reload_notifies_and_applies(env, daemon):
    env.write_config(logging={"level": "info", "format": "json"})
    d = daemon()
    ready = d.wait_message("READY=1")
    assert "STATUS=2 sources" in ready
    env.add_calls(0, [call("h1")])
    wait_marks(env, 0, ["h1"])

    # a third source appears on SIGHUP
    env.raw["sources"].append(dict(env.raw["sources"][1], sysname="rec3", group="g3"))
    env.raw["sources"][1]["enabled"] = False
    env.write_config()
    n = len(d.drain())
    d.proc.send_signal(signal.SIGHUP)
    reloading = d.wait_message("RELOADING=1", after=n)
    assert "MONOTONIC_USEC=" in reloading
    usec = int(reloading.split("MONOTONIC_USEC=")[1].split()[0])
    assert abs(usec - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 60_000_000
    d.wait_message("READY=1", after=n + 1)
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


def test_file_edit_applies_live_and_invalid_edit_is_kept_out(env, daemon):
    env.write_config(synchro=dict(env.raw["synchro"], sleep_period=3600),
                     logging={"level": "info", "format": "json"})
    d = daemon()
    d.wait_message("READY=1")
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
    r = subprocess.run(SYNCHROD + ["status", "-c", str(env.config_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "CONFIG ERROR" in r.stdout and "sources[1].mount_path" in r.stdout
    assert "rec1" in r.stdout and "rec2" in r.stdout
    assert "STATUS=" in d.wait_message("config error: sources[1].mount_path")

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


def test_restart_only_keys_are_refused_on_reload(env, daemon):
    env.write_config(logging={"level": "info", "format": "json"})
    d = daemon()
    d.wait_message("READY=1")
    raw = yaml.safe_load(yaml.safe_dump(env.raw))
    raw["target"]["database"] = raw["target"]["database"] + "&application_name=other"
    replace_config(env, raw)
    ev = d.wait_event("config_reload_failed")
    assert ev["key"] == "target.database" and "restart" in ev["error"]
    assert d.stop() == 0


def test_start_at_waits_and_run_now_skips_the_wait_and_the_sleep(env, daemon):
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    env.write_config(synchro=dict(env.raw["synchro"], sleep_period=3600,
                                  start_at=later.isoformat()),
                     logging={"level": "info", "format": "json"})
    env.add_calls(0, [call("s1")])
    d = daemon()
    d.wait_message("READY=1")
    d.wait_event("waiting_for_start_at")
    time.sleep(1.5)
    assert env.marks(0)["s1"] is None
    r = subprocess.run(SYNCHROD + ["run-now", "-c", str(env.config_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "1 daemon" in r.stdout, (r.stdout, r.stderr)
    wait_marks(env, 0, ["s1"], timeout=15)
    d.wait_event("cycle", source="rec2")
    # now asleep for an hour: run-now for one source wakes that source's group
    env.add_calls(0, [call("s2")])
    env.add_calls(1, [call("s3")])
    time.sleep(1)
    r = subprocess.run(SYNCHROD + ["run-now", "--source", "rec1", "-c", str(env.config_path)],
                       cwd=REPO, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    wait_marks(env, 0, ["s2"], timeout=15)
    time.sleep(1)
    assert env.marks(1)["s3"] is None   # rec2's group still sleeps
    assert d.stop() == 0


def test_one_cycle_event_per_source_per_cycle_and_no_password(env, daemon):
    # trust authentication ignores the password, so it can be a canary
    for src in env.raw["sources"]:
        src["database"] = src["database"].replace("postgresql://postgres@",
                                                  "postgresql://postgres:Sekr1tCanary@")
    env.raw["target"]["database"] = env.raw["target"]["database"].replace(
        "postgresql://postgres@", "postgresql://postgres:Sekr1tCanary@")
    assert "Sekr1tCanary" in yaml.safe_dump(env.raw)
    env.write_config(logging={"level": "info", "format": "json"})
    env.add_calls(0, [call(f"c{i}") for i in range(3)])
    d = daemon()
    wait_marks(env, 0, ["c0", "c1", "c2"])
    deadline = time.monotonic() + 30
    while len([e for e in d.events("cycle") if e["source"] == "rec2"]) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    busy = [e for e in d.events("cycle") if e["source"] == "rec1" and e["taken"]]
    assert busy and busy[0]["synchronized"] == 3 and busy[0]["files"] == 3
    for e in d.events("cycle"):
        assert {"seconds", "taken", "synchronized", "failed", "state", "timestamp"} <= e.keys()
    status = subprocess.run(SYNCHROD + ["status", "--json", "-c", str(env.config_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=30)
    assert d.stop() == 0
    assert "Sekr1tCanary" not in d.log_text()
    assert "Sekr1tCanary" not in status.stdout + status.stderr
    assert "Sekr1tCanary" not in "".join(d.messages)
