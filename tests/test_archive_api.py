"""The archive API and metrics (SPEC §10) against a real daemon: the tasks
with their next run, "run now" (401 without a token, 404, 202, then the run
in the history with its files), keyset pages of runs, one run's entries,
the SSE ``archive`` events and the ``synchrod_archive_*`` metrics."""
from __future__ import annotations

import datetime as dt

import _daemon
from _daemon import wait_until
from _monitor import EventStream, enable_monitor, start_monitor
from _sync_helpers import wav
from test_metrics import scrape

from synchrod.testing.recorders import CallSpec

daemons = _daemon.daemons


def test_archive_api_runs_a_task_and_shows_its_history(env, daemons, tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    env.add_calls(0, [CallSpec(f"a{i}", now - dt.timedelta(hours=3 + i), files=[wav(f"/calls/a{i}/0.wav")])
                      for i in range(3)])
    assert env.once("--until-idle").returncode == 0
    env.raw["archive"] = {"enabled": True, "timezone": "Europe/Prague", "tasks": [
        {"name": "nightly", "destination": str(tmp_path / "arch"), "schedule": "daily",
         "at": "02:00", "min_age_minutes": 0}]}
    enable_monitor(env, tmp_path)
    mon = start_monitor(daemons, env)
    listing = mon.get_json("/api/v1/archive/tasks")
    assert listing["enabled"] and listing["timezone"] == "Europe/Prague"
    (task,) = listing["tasks"]
    assert task["name"] == "nightly" and task["folder"] == str(tmp_path / "arch" / "nightly")
    assert task["schedule"] == {"kind": "daily", "at": "02:00", "weekday": None, "day": None}
    nxt = dt.datetime.fromisoformat(task["next_run_at"])
    assert nxt > now and nxt.astimezone(dt.timezone(dt.timedelta(hours=1))).hour in (1, 2)
    assert task["last_run"] is None and not task["running"]
    assert mon.post("/api/v1/archive/tasks/nightly/run").status == 401
    token = mon.login()
    assert mon.post("/api/v1/archive/tasks/nope/run", token=token).status == 404
    with EventStream(mon.url) as stream:
        reply = mon.post("/api/v1/archive/tasks/nightly/run", token=token).expect(202).json()
        assert reply["task"] == "nightly"

        def ended():
            runs = mon.get_json("/api/v1/archive/runs")["runs"]
            return runs if runs and runs[0]["state"] != "running" else None
        (run,) = wait_until(ended, 30, "the run to end")
        wait_until(lambda: any(e.name == "archive" and e.json()["event"] == "ended"
                               for e in stream.events), 10, "the archive ended event")
        events = [e.json()["event"] for e in stream.events if e.name == "archive"]
    assert events[0] == "started" and "batch" in events and events[-1] == "ended"
    assert run["state"] == "completed" and run["files_ok"] == 3 and run["requested_by"] == "admin"
    assert run["message"] == "Task 'nightly' completed." and run["slot_at"] is None
    detail = mon.get_json(f"/api/v1/archive/runs/{run['id']}", params={"limit": 4})
    assert detail["run"]["id"] == run["id"] and len(detail["files"]) == 4 and detail["next_cursor"]
    rest = mon.get_json(f"/api/v1/archive/runs/{run['id']}", params={"cursor": detail["next_cursor"]})
    files = detail["files"] + rest["files"]
    assert rest["next_cursor"] is None and len(files) == 6
    assert sorted(f["kind"] for f in files) == ["media"] * 3 + ["sidecar"] * 3
    assert all(f["result"] == "archived" for f in files)
    assert mon.get("/api/v1/archive/runs/999").status == 404
    assert mon.get(f"/api/v1/archive/runs/{run['id']}", params={"cursor": "!!"}).status == 400
    # a second run archives nothing new; pages of runs, newest first
    mon.post("/api/v1/archive/tasks/nightly/run", token=token).expect(202)
    wait_until(lambda: len([r for r in mon.get_json("/api/v1/archive/runs")["runs"]
                            if r["state"] == "completed"]) == 2, 30, "the second run")
    first = mon.get_json("/api/v1/archive/runs", params={"limit": 1, "task": "nightly"})
    assert first["runs"][0]["files_ok"] == 0 and first["next_cursor"]
    older = mon.get_json("/api/v1/archive/runs", params={"limit": 1, "cursor": first["next_cursor"]})
    assert older["runs"][0]["id"] == run["id"] and older["next_cursor"] is None
    assert mon.get("/api/v1/archive/runs", params={"cursor": "bm9wZQ=="}).status == 400
    assert mon.get_json("/api/v1/archive/tasks")["tasks"][0]["last_run"]["files_ok"] == 0
    m = scrape(mon)
    assert m.value("synchrod_archive_files_total", task="nightly", result="archived") == 3
    assert m.value("synchrod_archive_files_total", task="nightly", result="failed") == 0
    assert m.value("synchrod_archive_bytes_total", task="nightly") > 0
    assert m.value("synchrod_archive_last_success_timestamp_seconds", task="nightly") > now.timestamp()
    assert m.value("synchrod_archive_next_run_timestamp_seconds", task="nightly") == nxt.timestamp()
    assert mon.daemon.stop() == 0
