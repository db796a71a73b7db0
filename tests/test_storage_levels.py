"""Space management's levels on real filesystems (SPEC §9): a small tmpfs is
a target path and filler files drive its use, so levels are measured, not
mocked. Every transition both ways with hysteresis, the threshold events in
the log, on the SSE stream and in the metrics, a critical filesystem taking
no new files (retention priority), and a copy in flight abandoned at
emergency."""
from __future__ import annotations

import time

import _daemon
import pytest
from _daemon import Daemon, wait_until
from _monitor import enable_monitor, start_monitor
from _sync_helpers import attempts, blob, set_target, spec, tmpfs
from test_metrics import scrape

from synchrod.fs.targets import fs_usage

daemons = _daemon.daemons
MiB = 1 << 20


@pytest.fixture
def small_fs(tmp_path):
    """A real 16 MiB filesystem (tmpfs)."""
    with tmpfs(tmp_path / "small", "16m") as where:
        yield where


def fill_to(fs, percent: float) -> None:
    """Grows or shrinks a filler file so the filesystem is ``percent`` used."""
    filler = fs / "filler.bin"
    have = filler.stat().st_size if filler.exists() else 0
    usage = fs_usage(str(fs))
    want = max(0, int(usage.capacity * percent / 100) - (usage.used - have))
    with open(filler, "r+b" if filler.exists() else "wb") as fh:
        if want < have:
            fh.truncate(want)
        else:
            fh.seek(have)
            fh.write(b"\0" * (want - have))
    got = fs_usage(str(fs)).ratio() * 100
    assert abs(got - percent) < 0.6, (got, percent)


def storage_env(env, small_fs, tmp_path, **storage):
    """The small filesystem as the preferred target path, the ordinary one
    behind it; space management on, measured every second."""
    set_target(env, default_path=str(small_fs), default_watermark=100,
               additional_paths=[{"path": str(env.target_path), "priority": -1}])
    env.raw["synchro"]["sleep_period"] = 1
    env.raw["storage"] = {"enabled": True, "check_interval": 1, **storage}
    enable_monitor(env, tmp_path)


def actions(daemon) -> list[tuple[str, str]]:
    return [(e["eventAction"], e["storage_level"]) for e in daemon.events("storage_threshold")]


def wait_actions(daemon, expected: list[tuple[str, str]], timeout: float = 20) -> None:
    try:
        wait_until(lambda: actions(daemon) == expected, timeout, f"storage events {expected}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}, got {actions(daemon)}\n{daemon.tail()}") from None


def test_every_level_both_ways_with_hysteresis(env, daemons, small_fs, tmp_path):
    storage_env(env, small_fs, tmp_path)
    mon = start_monitor(daemons, env)
    d = mon.daemon
    with mon.events() as stream:
        steps = []
        fill_to(small_fs, 80)
        steps.append(("ENTER_LOW_STORAGE_SPACE", "warning"))
        wait_actions(d, steps)
        fill_to(small_fs, 92)
        steps.append(("ENTER_CRITICAL_STORAGE_SPACE", "critical"))
        wait_actions(d, steps)
        # the SSE stream carries the same events, as MediaSense spells them
        event = stream.wait("storage", lambda e: e["eventAction"] == "ENTER_CRITICAL_STORAGE_SPACE",
                            timeout=20)
        assert event["eventType"] == "STORAGE_THRESHOLD_EVENT" and event["path"] == str(small_fs)
        assert event["filesystem"] == str(small_fs) and 91 < event["percentageUtilization"] < 93
        assert event["daemon"] == d.name
        stream.wait("alarm", lambda a: a["kind"] == "storage_critical", timeout=20)
        # listed in the status while it lasts: the warning's alarm was replaced
        assert [x["kind"] for x in mon.status()["alarms"]] == ["storage_critical"]

        # critical in retention priority: the path takes no new files, the next one does
        env.add_calls(0, [spec("c1", [blob("AUDIO", "/c/1.wav", size=64 << 10)], minutes_ago=30)])
        wait_until(lambda: env.marks(0).get("c1") == "S", 30, "c1 synchronized")
        assert not list(small_fs.rglob("c1*")) and list(env.target_path.rglob("c1*"))
        m = wait_until(lambda: (lambda s: s if s.get("synchrod_storage_level",
                                                     filesystem=str(small_fs)) == 2 else None)(scrape(mon)),
                       20, "synchrod_storage_level 2")
        assert m.value("synchrod_storage_accepting", path=str(small_fs)) == 0

        # 88 % after critical stays critical (hysteresis: exit at 87)
        fill_to(small_fs, 88)
        measured = len(d.events("cycle"))
        wait_until(lambda: len(d.events("cycle")) >= measured + 3, 20, "three more cycles")
        assert actions(d) == steps
        fill_to(small_fs, 85)
        steps.append(("EXIT_CRITICAL_STORAGE_SPACE", "warning"))
        wait_actions(d, steps)
        fill_to(small_fs, 72)   # above warning's exit (70): still warning
        fill_to(small_fs, 60)
        steps.append(("EXIT_LOW_STORAGE_SPACE", "normal"))
        wait_actions(d, steps)

        # open again: the preferred path takes the next call
        env.add_calls(0, [spec("c2", [blob("AUDIO", "/c/2.wav", size=64 << 10)], minutes_ago=20)])
        wait_until(lambda: env.marks(0).get("c2") == "S", 30, "c2 synchronized")
        assert list(small_fs.rglob("c2*"))

        # several levels at once: one event per level passed, in order
        fill_to(small_fs, 99.6)
        steps += [("ENTER_LOW_STORAGE_SPACE", "warning"), ("ENTER_CRITICAL_STORAGE_SPACE", "critical"),
                  ("ENTER_EMERGENCY_STORAGE_SPACE", "emergency")]
        wait_actions(d, steps)
        fill_to(small_fs, 40)
        steps += [("EXIT_EMERGENCY_STORAGE_SPACE", "critical"), ("EXIT_CRITICAL_STORAGE_SPACE", "warning"),
                  ("EXIT_LOW_STORAGE_SPACE", "normal")]
        wait_actions(d, steps)
        got = [e.json()["eventAction"] for e in stream.snapshot() if e.name == "storage"]
        assert got == [a for a, _ in steps], got
        assert mon.status()["alarms"] == []   # back to normal: no alarm lasts
    assert attempts(env) == {}
    assert d.stop() == 0


def test_a_copy_in_flight_is_abandoned_at_emergency(env, small_fs, tmp_path):
    """A copy to the small filesystem is held after its first bytes; meanwhile
    the filesystem reaches emergency: the copy is abandoned, its temporary file
    removed, the call left unmarked with no attempt counted, and taken again
    (by the open path) once the level allows."""
    storage_env(env, small_fs, tmp_path)
    env.raw["monitor"]["enabled"] = False
    env.write_config()
    env.add_calls(0, [spec("e1", [blob("AUDIO", "/e/1.wav", size=256 << 10)], minutes_ago=30)])
    release = tmp_path / "release"
    with Daemon(env, extra_env={"SYNCHROD_FAULT": "copy_partial", "SYNCHROD_FAULT_ACTION": "hang",
                                "SYNCHROD_FAULT_RELEASE": str(release)}) as d:
        wait_until(lambda: list(small_fs.rglob(".*e1*")) or list(small_fs.rglob("*e1*")), 20,
                   "the copy under way on the small filesystem")
        fill_to(small_fs, 99.6)
        d.wait_event("storage_threshold", eventAction="ENTER_EMERGENCY_STORAGE_SPACE", timeout=20)
        release.touch()
        cycle = d.wait_event("cycle", skipped=1, timeout=20)
        assert cycle["synchronized"] == 0 and cycle["failed"] == 0
        assert env.marks(0).get("e1") is None and attempts(env) == {}
        assert env.target("SELECT outcome, reason FROM synchrod.run_calls WHERE sid = 'e1'") == [
            ("skipped", "storage_emergency")]
        assert not [p for p in small_fs.rglob("*") if p.name != "filler.bin" and p.is_file()]
        # the open path takes it at the next cycle
        wait_until(lambda: env.marks(0).get("e1") == "S", 30, "e1 synchronized")
        assert list(env.target_path.rglob("e1*"))
        assert d.stop() == 0


class _Collector:
    """A real HTTP subscriber on 127.0.0.1: keeps every JSON body POSTed to it."""

    def __init__(self, port: int = 0):
        import http.server
        import json
        import threading
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers["Content-Type"], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/synchrod/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def actions(self) -> list[str]:
        return [body["eventAction"] for _, body in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_subscribers_receive_events_and_a_dead_one_is_reported(env, daemons, small_fs, tmp_path):
    from _monitor import free_port
    live, dead_port = _Collector(), free_port()
    dead_url = f"http://127.0.0.1:{dead_port}/synchrod/events"
    storage_env(env, small_fs, tmp_path, subscribers=[live.url, dead_url])
    mon = start_monitor(daemons, env)
    d = mon.daemon
    revived = None
    try:
        with mon.events() as stream:
            fill_to(small_fs, 80)
            wait_until(lambda: live.actions() == ["ENTER_LOW_STORAGE_SPACE"], 20, "the live subscriber")
            content_type, body = live.received[0]
            assert content_type == "application/json"
            assert body["eventType"] == "STORAGE_THRESHOLD_EVENT" and body["level"] == "warning"
            down = d.wait_event("subscriber_down", url=dead_url, timeout=20)
            assert "ClientConnectorError" in down["error"] or "Connect" in down["error"], down
            stream.wait("alarm", lambda a: a["kind"] == "subscriber_down", timeout=20)
            # the dead one comes back: its waiting event is delivered, in order
            fill_to(small_fs, 92)
            wait_until(lambda: live.actions()[-1:] == ["ENTER_CRITICAL_STORAGE_SPACE"], 20,
                       "the second event")
            revived = _Collector(dead_port)
            wait_until(lambda: revived.actions() == ["ENTER_LOW_STORAGE_SPACE",
                                                     "ENTER_CRITICAL_STORAGE_SPACE"], 90,
                       "the revived subscriber's backlog")
            d.wait_event("subscriber_up", url=dead_url, timeout=10)
        # synchronisation went on all along
        assert all(e["state"] in ("ok", "idle") for e in d.events("cycle"))
        assert d.stop() == 0
    finally:
        live.close()
        if revived is not None:
            revived.close()


def test_one_daemon_at_a_time_publishes_the_events(env, daemons, small_fs, tmp_path):
    """Two daemons both keep levels for their placement; only the holder of
    the storage duty logs (and sends) the events; when it dies the other
    takes the duty over and publishes the next change."""
    storage_env(env, small_fs, tmp_path)
    env.raw["monitor"]["enabled"] = False
    env.write_config()
    first = daemons("first")
    first.wait_event("duty_claimed", duty="storage", timeout=20)
    second = daemons("second")
    second.wait_event("started", timeout=20)
    fill_to(small_fs, 80)
    wait_actions(first, [("ENTER_LOW_STORAGE_SPACE", "warning")])
    time.sleep(4)   # four of its measurements (check_interval 1)
    assert actions(second) == [] and not second.find("duty_claimed")
    first.proc.kill()
    first.proc.wait(10)
    second.wait_event("duty_claimed", duty="storage", timeout=20)
    fill_to(small_fs, 92)
    wait_actions(second, [("ENTER_CRITICAL_STORAGE_SPACE", "critical")])
    assert second.stop() == 0
