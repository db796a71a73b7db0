"""The monitor's JSON API (synchrod/monitor/openapi.yaml, SPEC §8) against a
real `synchrod run` over real HTTP: status, backlog and lag, jobs, the run
history and its pagination, every source action, reload and shutdown, the
Server-Sent Events, and `synchrod status --json/--watch`."""
from __future__ import annotations

import copy
import datetime as dt
import os
import socket
import subprocess
import threading
import time

import yaml

import _daemon
import synchrod
from _daemon import child_env, status_json, synchrod as synchrod_cli, wait_until
from _monitor import (CANARY, enable_monitor, start_monitor, validate, with_canary)
from conftest import NOW, REPO, SYNCHROD, call
from synchrod.testing.recorders import FileSpec

daemons = _daemon.daemons   # the fixture (bound, not imported: no unused-import warning)

SOURCE_STATES = {"running", "waiting", "paused", "disabled", "down", "standby"}
JOB_FIELDS = {"id", "source", "generation", "state", "attempt", "type", "status", "timestamp",
              "comment"}


# --- helpers ---------------------------------------------------------------------------

def _configure(env, tmp_path, **synchro) -> dict:
    env.raw["synchro"].update(synchro)
    return enable_monitor(env, tmp_path)


def _src(status: dict, name: str) -> dict:
    found = [s for s in status["sources"] if s["sysname"] == name]
    assert len(found) == 1, status["sources"]
    return found[0]


def _job(jobs: list[dict], name: str) -> dict:
    found = [j for j in jobs if j["source"] == name]
    assert len(found) == 1, jobs
    return found[0]


def wait_marks(env, i: int, sids, mark: str = "S", timeout: float = 30) -> None:
    wait_until(lambda: all(env.marks(i).get(s) == mark for s in sids), timeout,
               f"{sorted(sids)} marked {mark} on source {i}: now {env.marks(i)}")


def stays_unmarked(env, i: int, sid: str, seconds: float) -> None:
    """``sid`` is still not synchronized ``seconds`` later (the absence of
    something can only be watched for a while)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert env.marks(i)[sid] is None, f"{sid} was synchronized: {env.marks(i)}"
        time.sleep(0.1)


def replace_config(env, raw: dict) -> None:
    """Writes the file the way editors do: a sibling renamed over it."""
    tmp = env.config_path.with_name(".synchrod.yaml.swp")
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False))
    os.rename(tmp, env.config_path)


def _age_seconds(minutes_ago: int) -> float:
    """Age now of a call made by ``call(sid, minutes_ago)`` (relative to NOW)."""
    return time.time() - (NOW - dt.timedelta(minutes=minutes_ago)).timestamp()


def _keys(obj) -> set[str]:
    """Every key of every object nested in ``obj``."""
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in _keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in _keys(v)}
    return set()


# --- status ----------------------------------------------------------------------------

def test_status_describes_daemon_sources_target_paths_and_config_without_secrets(
        env, daemons, tmp_path):
    with_canary(env)
    _configure(env, tmp_path, sleep_period=300)
    env.add_calls(0, [call("st1", 30), call("st2", 20), call("st3", 10, files=2)])
    t0 = time.time()
    mon = start_monitor(daemons, env)
    wait_marks(env, 0, ["st1", "st2", "st3"])

    def synced():
        st = mon.status()
        s = _src(st, "rec1")
        ok = s["backlog"] == 0 and (s["last_counts"] or {}).get("synchronized") == 3
        return st if ok and _src(st, "rec2")["last_cycle_at"] else None
    status = wait_until(synced, 15, "rec1's cycle in /api/v1/status")
    validate(status, "Status")

    d = status["daemon"]
    assert d["pid"] == mon.daemon.pid and d["name"] == mon.daemon.name
    assert d["host"] == socket.gethostname()
    assert d["version"] == synchrod.__version__ and d["state"] == "running"
    assert d["config_path"] == str(env.config_path)
    assert d["config_error"] is None and d["config_error_at"] is None
    assert d["users_configured"] is True
    assert t0 - 5 <= dt.datetime.fromisoformat(d["started_at"]).timestamp() <= time.time()

    assert [s["sysname"] for s in status["sources"]] == ["rec1", "rec2"]
    for s, group in zip(status["sources"], ("g1", "g2")):
        assert s["group"] == group and s["enabled"] is True
        assert s["state"] in {"waiting", "running"}, s
        assert s["owner"] == mon.daemon.name
        assert s["paused"] is False and s["disabled_by"] is None
        assert s["stalled"] is False and s["stalled_since"] is None
        assert s["last_error"] is None and s["retrying"] == 0 and s["erroneous"] == 0
        assert s["backlog"] == 0 and s["lag_seconds"] in (None, 0)
        assert s["last_cycle_at"] is not None and s["last_success_at"] is not None
    rec1 = _src(status, "rec1")
    assert rec1["last_counts"] == {"taken": 3, "synchronized": 3, "not_used": 0, "erroneous": 0,
                                   "failed": 0, "skipped": 0}
    assert t0 <= dt.datetime.fromisoformat(rec1["last_success_at"]).timestamp() <= time.time() + 1

    assert {j["source"] for j in status["jobs"]} == {"rec1", "rec2"}
    default = [p for p in status["target_paths"] if p["path"] == str(env.target_path)]
    assert len(default) == 1, status["target_paths"]
    p = default[0]
    assert (p["kind"], p["priority"], p["balance"], p["watermark"]) == ("audio", 0, 1, 100)
    assert 0 <= p["usage_ratio"] <= 1 and p["above_watermark"] is False
    assert 0 < p["used_bytes"] <= p["capacity_bytes"]
    fs = os.statvfs(env.target_path)
    used = (fs.f_blocks - fs.f_bfree) * fs.f_frsize
    ratios = (used / (fs.f_blocks * fs.f_frsize), used / (used + fs.f_bavail * fs.f_frsize))
    assert min(ratios) - 0.02 <= p["usage_ratio"] <= max(ratios) + 0.02, (p, ratios)

    cfg = status["config"]
    assert (cfg["enabled"], cfg["sleep_period"], cfg["calls_per_period"], cfg["max_attempts"],
            cfg["mark_erroneous"]) == (True, 300, 50, 3, False)
    assert not {"database", "password", "password_hash", "users", "jwt_secret",
                "dsn"} & _keys(cfg), cfg

    # the canary password of the DSNs shows nowhere
    outputs = {}
    run_id = mon.get_json("/api/v1/runs")["runs"][0]["id"]
    for path in ("/api/v1/status", "/api/v1/sources", "/api/v1/sources/rec1", "/api/v1/jobs",
                 "/api/v1/runs", f"/api/v1/runs/{run_id}", "/api/v1/openapi.json", "/metrics",
                 "/api/v1/sources/nope", "/api/v1/runs/999999999"):
        outputs[path] = mon.get(path).text
    with mon.events() as es:
        es.wait("snapshot")
        outputs["events"] = "\n".join(e.data for e in es.snapshot())
    cli = synchrod_cli(env, "status", "--json")
    outputs["status --json"] = cli.stdout + cli.stderr
    outputs["log"] = mon.daemon.log_text()
    for where, text in outputs.items():
        assert CANARY not in text, f"the DSN password shows in {where}"
        assert "postgresql://" not in text, f"a DSN shows in {where}"
    assert mon.daemon.stop() == 0


def test_backlog_and_lag_are_the_eligible_calls_not_yet_synchronized(env, daemons, tmp_path):
    # one call per cycle and a long sleep: after the first cycle, the others wait
    _configure(env, tmp_path, sleep_period=300, calls_per_period=1)
    env.add_calls(0, [call("b1", 40), call("b2", 30), call("b3", 20), call("b4", 10),
                      # not eligible: unfinished, unprocessed, already synchronized
                      call("x1", 90, state="DECODED"), call("x2", 80, mixed="F"),
                      call("x3", 70, synchronized="S")])
    mon = start_monitor(daemons, env)
    wait_marks(env, 0, ["b1"])

    rec1 = wait_until(lambda: (lambda s: s if s["backlog"] == 3 else None)(mon.source("rec1")),
                      15, "rec1's backlog 3")
    validate(rec1, "Source")
    assert env.marks(0)["b2"] is None
    assert abs(rec1["lag_seconds"] - _age_seconds(30)) < 60, rec1   # b2 is the oldest left
    rec2 = mon.source("rec2")
    assert rec2["backlog"] == 0 and rec2["lag_seconds"] in (None, 0), rec2

    # one more cycle: one call fewer, the next oldest gives the lag
    token = mon.login()
    mon.action("rec1", "run", token).expect(200)
    wait_marks(env, 0, ["b2"], timeout=10)
    rec1 = wait_until(lambda: (lambda s: s if s["backlog"] == 2 else None)(mon.source("rec1")),
                      15, "rec1's backlog 2")
    assert abs(rec1["lag_seconds"] - _age_seconds(20)) < 60, rec1
    assert env.marks(0)["b3"] is None
    assert mon.daemon.stop() == 0


# --- jobs and runs -------------------------------------------------------------------------

def _lost(sid: str, minutes_ago: int):
    return call(sid, minutes_ago, file_specs=[FileSpec("AUDIO", f"/calls/{sid}.wav", content="none")])


def _pages(mon, limit: int, **params) -> list[list[dict]]:
    pages, before = [], None
    for _ in range(100):
        q = dict(params, limit=limit)
        if before is not None:
            q["before"] = before
        page = mon.get_json("/api/v1/runs", params=q)
        assert set(page) == {"runs", "next_before"}, page
        assert len(page["runs"]) <= limit, page
        for run in page["runs"]:
            validate(run, "Run")
        pages.append(page["runs"])
        before = page["next_before"]
        if before is None:
            return pages
        assert page["runs"], f"an empty page with next_before {before}"
        assert before <= page["runs"][-1]["id"], page
    raise AssertionError("runs: no end after 100 pages")


def test_jobs_and_the_run_history(env, daemons, tmp_path):
    # two calls per cycle: rec1 needs 4 cycles (one call has no media), rec2 2;
    # the call that fails waits 10 minutes before its next try
    _configure(env, tmp_path, sleep_period=1, calls_per_period=2, backoff_base=600)
    env.add_calls(0, [call(f"r{n}", 60 - n) for n in range(6)] + [_lost("lost", 57)])
    env.add_calls(1, [call(f"q{n}", 60 - n) for n in range(3)])
    mon = start_monitor(daemons, env)
    wait_marks(env, 0, [f"r{n}" for n in range(6)])
    wait_marks(env, 1, ["q0", "q1", "q2"])
    assert env.marks(0)["lost"] is None

    # --- jobs: one per source, ids stable, generation counting cycles
    first = mon.get_json("/api/v1/jobs")
    assert set(first) == {"jobs"}
    jobs = first["jobs"]
    assert sorted(j["source"] for j in jobs) == ["rec1", "rec2"]
    for j in jobs:
        validate(j, "Job")
        assert set(j) >= JOB_FIELDS
        assert j["generation"] >= 1 and j["attempt"] >= 1 and j["timestamp"] is not None
        assert j["state"] in {"waiting", "running"} and j["status"] in {"Waiting", "Running", "Done"}
        assert isinstance(j["comment"], str)
    assert _job(jobs, "rec2")["attempt"] == 1
    assert len({j["id"] for j in jobs}) == 2
    later = wait_until(lambda: (lambda js: js if all(
        _job(js, s)["generation"] > _job(jobs, s)["generation"] for s in ("rec1", "rec2"))
        else None)(mon.get_json("/api/v1/jobs")["jobs"]), 15, "the next cycles' generations")
    assert {j["source"]: j["id"] for j in later} == {j["source"]: j["id"] for j in jobs}

    # --- runs: newest first, keyset pages of 2 until next_before is null
    db = env.target("SELECT id, source, taken, synchronized, failed, files, bytes"
                    " FROM synchrod.runs ORDER BY id DESC")
    assert len(db) >= 6, db
    pages = _pages(mon, 2)
    seen = [r["id"] for page in pages for r in page]
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == len(seen), seen
    newest = seen[0]
    assert set(seen) == {row[0] for row in env.target(
        "SELECT id FROM synchrod.runs WHERE id <= %s", newest)}
    runs = {r["id"]: r for page in pages for r in page}
    for rid, source, taken, synced, failed, files, nbytes in db:
        if rid in runs:
            r = runs[rid]
            assert (r["source"], r["taken"], r["synchronized"], r["failed"], r["files"],
                    r["bytes"]) == (source, taken, synced, failed, files, nbytes), r
            assert r["daemon"] == mon.daemon.name and r["state"] == "ok" and r["error"] is None
    rec1_runs = [r for r in runs.values() if r["source"] == "rec1"]
    assert sum(r["synchronized"] for r in rec1_runs) == 6
    assert sum(r["failed"] for r in rec1_runs) == 1

    # the source filter, alone and with pages
    rec1_ids = [r["id"] for page in _pages(mon, 1, source="rec1") for r in page]
    assert rec1_ids == [row[0] for row in db if row[1] == "rec1" and row[0] <= newest]
    rec2_pages = _pages(mon, 500, source="rec2")
    assert len(rec2_pages) == 1
    assert [r["id"] for r in rec2_pages[0]] == [row[0] for row in db if row[1] == "rec2"]
    assert sum(r["synchronized"] for r in rec2_pages[0]) == 3
    assert mon.get_json("/api/v1/runs", params={"source": "nope"}) == {"runs": [],
                                                                        "next_before": None}

    # --- one run: every call's outcome; the missing file named
    outcomes = {}
    for run in rec1_runs:
        one = mon.get_json(f"/api/v1/runs/{run['id']}")
        assert set(one) == {"run", "calls", "next_after"}
        assert one["run"] == run or one["run"]["id"] == run["id"]
        assert len(one["calls"]) == run["taken"] and one["next_after"] is None, one
        for c in one["calls"]:
            validate(c, "RunCall")
            outcomes[c["sid"]] = c
    assert {s: c["outcome"] for s, c in outcomes.items()} == dict(
        {f"r{n}": "synchronized" for n in range(6)}, lost="failed")
    lost = outcomes["lost"]
    assert lost["reason"] == "missing_file", lost
    assert "/calls/lost.wav" in (lost["detail"] or ""), lost

    # calls of a run page by source_cplid
    two = next(r for r in rec1_runs if r["taken"] == 2)
    got, after = [], None
    for _ in range(5):
        q = {"limit": 1} | ({"after": after} if after is not None else {})
        page = mon.get_json(f"/api/v1/runs/{two['id']}", params=q)
        assert len(page["calls"]) <= 1
        got += [c["source_cplid"] for c in page["calls"]]
        after = page["next_after"]
        if after is None:
            break
        assert after == page["calls"][-1]["source_cplid"], page
    assert len(got) == 2 and got == sorted(set(got)), got

    # --- errors
    for path, params, wanted in (
            ("/api/v1/runs/999999999", None, {404}),
            ("/api/v1/runs/abc", None, {400, 404}),
            ("/api/v1/runs", {"limit": "abc"}, {400}),
            ("/api/v1/runs", {"limit": 0}, {400}),
            ("/api/v1/runs", {"limit": 501}, {400}),
            ("/api/v1/runs", {"before": "x"}, {400}),
            (f"/api/v1/runs/{two['id']}", {"limit": "abc"}, {400}),
            (f"/api/v1/runs/{two['id']}", {"after": -1}, {400}),
            ("/api/v1/sources/rec%001", None, {404})):
        reply = mon.get(path, params=params)
        assert reply.status in wanted, str(reply)
        assert reply.content_type == "application/json", str(reply)
        validate(reply.json(), "Error")
    # a NUL byte names no source (PostgreSQL refuses it in text: it must not get there)
    reply = mon.get("/api/v1/runs", params={"source": "rec\x001"})
    assert reply.status in (200, 400), str(reply)
    if reply.status == 200:
        assert reply.json() == {"runs": [], "next_before": None}, str(reply)
    assert mon.daemon.stop() == 0


# --- actions ---------------------------------------------------------------------------------

def _action(mon, source: str, action: str, token: str, status: int = 200) -> dict:
    body = mon.action(source, action, token).expect(status).json()
    validate(body, "ActionResult" if status == 200 else "Error")
    return body


def test_pause_and_resume(env, daemons, tmp_path):
    _configure(env, tmp_path, sleep_period=1)
    mon = start_monitor(daemons, env)
    mon.daemon.wait_event("cycle", source="rec1")
    token = mon.login()

    paused = _action(mon, "rec1", "pause", token)["source"]
    assert paused["sysname"] == "rec1" and paused["state"] == "paused" and paused["paused"]
    env.add_calls(0, [call("p1")])
    env.add_calls(1, [call("p2")])
    run = mon.action("rec1", "run", token)         # a run does not end a pause
    assert run.status in (200, 409), str(run)
    wait_marks(env, 1, ["p2"])                     # the other source goes on
    stays_unmarked(env, 0, "p1", 3)
    rec1 = mon.source("rec1")
    assert rec1["state"] == "paused" and rec1["paused"] is True, rec1
    job = _job(mon.get_json("/api/v1/jobs")["jobs"], "rec1")
    assert job["state"] == "paused" and job["status"] == "Pause", job

    resumed = _action(mon, "rec1", "resume", token)["source"]
    assert resumed["paused"] is False and resumed["state"] != "paused", resumed
    wait_marks(env, 0, ["p1"], timeout=10)

    # unknown source or action
    for path in ("/api/v1/sources/nope/pause", "/api/v1/sources/nope/run",
                 "/api/v1/sources/rec1/explode"):
        reply = mon.post(path, token=token)
        assert reply.status == 404, str(reply)
        validate(reply.json(), "Error")
    reply = mon.get("/api/v1/sources/nope")
    assert reply.status == 404, str(reply)
    validate(reply.json(), "Error")
    assert mon.daemon.stop() == 0


def test_disable_survives_a_restart_and_enable_cannot_override_the_file(env, daemons, tmp_path):
    env.raw["sources"][1]["enabled"] = False
    _configure(env, tmp_path, sleep_period=1)
    mon = start_monitor(daemons, env)
    mon.daemon.wait_event("cycle", source="rec1")
    token = mon.login()

    rec2 = mon.source("rec2")
    assert (rec2["enabled"], rec2["state"], rec2["disabled_by"]) == (False, "disabled", "config")
    refused = mon.action("rec2", "enable", token)
    assert refused.status == 409, str(refused)
    validate(refused.json(), "Error")
    assert mon.source("rec2")["state"] == "disabled"

    off = _action(mon, "rec1", "disable", token)["source"]
    assert (off["enabled"], off["state"], off["disabled_by"]) == (True, "disabled", "admin"), off
    env.add_calls(0, [call("d1")])
    stays_unmarked(env, 0, "d1", 2.5)
    job = _job(mon.get_json("/api/v1/jobs")["jobs"], "rec1")
    assert job["state"] == "disabled" and job["status"] == "Disabled", job

    # kept in the replay database: a restarted daemon still leaves it alone
    assert mon.daemon.stop() == 0
    mon = start_monitor(daemons, env, "restarted")
    rec1 = mon.source("rec1")
    assert (rec1["state"], rec1["disabled_by"]) == ("disabled", "admin"), rec1
    stays_unmarked(env, 0, "d1", 2.5)
    on = _action(mon, "rec1", "enable", mon.login())["source"]
    assert on["state"] != "disabled" and on["disabled_by"] is None, on
    wait_marks(env, 0, ["d1"], timeout=10)
    assert mon.daemon.stop() == 0


def test_run_retry_reload_and_shutdown(env, daemons, tmp_path):
    _configure(env, tmp_path, sleep_period=300, mark_erroneous=True, max_attempts=1)
    env.add_calls(0, [call("bad", 50), call("good", 40)])
    media = env.mounts[0] / "calls" / "bad" / "0.wav"
    kept = media.read_bytes()
    media.unlink()
    mon = start_monitor(daemons, env)
    wait_marks(env, 0, ["good"])
    wait_marks(env, 0, ["bad"], "E")
    mon.daemon.wait_event("cycle", source="rec2")
    wait_until(lambda: mon.source("rec1")["erroneous"] == 1, 10, "rec1 erroneous 1")
    token = mon.login()

    # run: the group skips its 300 s sleep
    env.add_calls(0, [call("woken", 30)])
    stays_unmarked(env, 0, "woken", 1)
    woken = _action(mon, "rec1", "run", token)
    assert woken["source"]["sysname"] == "rec1"
    wait_marks(env, 0, ["woken"], timeout=5)

    # retry: the E mark and the failure record cleared, the call taken again
    media.write_bytes(kept)
    _action(mon, "rec1", "retry", token)
    wait_marks(env, 0, ["bad"], timeout=5)
    assert not env.target("SELECT 1 FROM synchrod.attempts WHERE source = 'rec1'")
    wait_until(lambda: mon.source("rec1")["erroneous"] == 0, 10, "rec1 erroneous 0")

    # reload: a valid edit is applied
    raw = copy.deepcopy(env.raw)
    raw["synchro"]["calls_per_period"] = 7
    replace_config(env, raw)
    reply = mon.post("/api/v1/reload", token=token).expect(200).json()
    assert reply == {"reloaded": True, "error": None}, reply
    assert mon.status()["config"]["calls_per_period"] == 7
    # an invalid one is refused with its key path, the running configuration kept
    bad = copy.deepcopy(raw)
    bad["sources"][1]["mount_path"] = "relative/mnt"
    bad["synchro"]["calls_per_period"] = 9
    replace_config(env, bad)
    reply = mon.post("/api/v1/reload", token=token).expect(200).json()
    assert reply["reloaded"] is False and "sources[1].mount_path" in reply["error"], reply
    status = mon.status()
    assert "sources[1].mount_path" in (status["daemon"]["config_error"] or ""), status["daemon"]
    assert status["config"]["calls_per_period"] == 7
    unauth = mon.post("/api/v1/reload")
    assert unauth.status == 401, str(unauth)

    # shutdown: 202, then a clean exit
    reply = mon.post("/api/v1/shutdown", token=token)
    assert reply.status == 202, str(reply)
    validate(reply.json(), "Message")
    assert mon.daemon.wait_exit(30) == 0
    assert mon.daemon.find("stopped")


# --- events --------------------------------------------------------------------------------

EVENT_SCHEMAS = {"snapshot": "Status", "source": "Source", "job": "Job", "cycle": "CycleEvent",
                 "alarm": "Alarm", "daemon": "Daemon"}


def test_events_stream_snapshot_state_changes_and_cycles(env, daemons, tmp_path):
    _configure(env, tmp_path, sleep_period=300)
    mon = start_monitor(daemons, env)
    mon.daemon.wait_event("cycle", source="rec1")
    mon.daemon.wait_event("cycle", source="rec2")
    token = mon.login()
    with mon.events() as es:
        assert es.status == 200
        assert es.headers.get("Content-Type", "").startswith("text/event-stream")
        snap = es.wait("snapshot", timeout=5)
        assert es.snapshot()[0].name == "snapshot"
        validate(snap, "Status")
        assert [s["sysname"] for s in snap["sources"]] == ["rec1", "rec2"]

        n = len(es.snapshot())
        _action(mon, "rec1", "pause", token)
        src = es.wait("source", lambda s: s["sysname"] == "rec1" and s["state"] == "paused",
                      start=n)
        validate(src, "Source")
        n = len(es.snapshot())
        _action(mon, "rec1", "resume", token)
        es.wait("source", lambda s: s["sysname"] == "rec1" and not s["paused"], start=n)

        env.add_calls(1, [call("ev1")])
        n = len(es.snapshot())
        _action(mon, "rec2", "run", token)
        cyc = es.wait("cycle", lambda c: c["source"] == "rec2" and c["counts"]["taken"] == 1,
                      timeout=15, start=n)
        validate(cyc, "CycleEvent")
        assert cyc["counts"]["synchronized"] == 1 and cyc["state"] == "ok" and cyc["error"] is None
        assert env.target("SELECT source, synchronized FROM synchrod.runs WHERE id = %s",
                          cyc["run_id"]) == [("rec2", 1)]
        job = es.wait("job", lambda j: j["source"] == "rec2" and
                      j["generation"] == cyc["generation"], start=n)
        validate(job, "Job")

        # alarms: a source whose database is gone, then back; an invalid edit
        good = copy.deepcopy(env.raw)
        gone = copy.deepcopy(good)
        gone["sources"][1]["database"] = env.cluster.dsn("synchrod_no_such_database")
        n = len(es.snapshot())
        replace_config(env, gone)
        mon.daemon.wait_event("config_reloaded")
        _action(mon, "rec2", "run", token)
        down = es.wait("alarm", lambda a: a["kind"] == "source_down", start=n)
        assert down["source"] == "rec2", down
        es.wait("source", lambda s: s["sysname"] == "rec2" and s["state"] == "down", start=n)
        es.wait("cycle", lambda c: c["source"] == "rec2" and c["state"] == "down", start=n)
        n = len(es.snapshot())
        replace_config(env, good)
        wait_until(lambda: len(mon.daemon.events("config_reloaded")) >= 2, 10, "the 2nd reload")
        _action(mon, "rec2", "run", token)
        back = es.wait("alarm", lambda a: a["kind"] == "source_recovered", start=n)
        assert back["source"] == "rec2", back
        es.wait("source", lambda s: s["sysname"] == "rec2" and s["state"] != "down", start=n)

        n = len(es.snapshot())
        broken = copy.deepcopy(good)
        broken["sources"][1]["mount_path"] = "relative/mnt"
        replace_config(env, broken)
        alarm = es.wait("alarm", lambda a: a["kind"] == "config_error", start=n)
        assert "sources[1].mount_path" in alarm["message"] and alarm["source"] is None, alarm
        daemon = es.wait("daemon", lambda d: d["config_error"] is not None, start=n)
        assert "sources[1].mount_path" in daemon["config_error"], daemon
        n = len(es.snapshot())
        replace_config(env, good)
        es.wait("daemon", lambda d: d["config_error"] is None, start=n)

        for ev in es.snapshot():
            assert ev.name in EVENT_SCHEMAS or ev.name == "target", ev
            data = ev.json()
            if ev.name in EVENT_SCHEMAS:
                validate(data, EVENT_SCHEMAS[ev.name])
    assert mon.daemon.stop() == 0


# --- the command line ----------------------------------------------------------------------

def test_status_command_shows_jobs_backlog_and_lag(env, daemons, tmp_path):
    _configure(env, tmp_path, sleep_period=300, calls_per_period=1)
    env.add_calls(0, [call("c1", 30), call("c2", 20), call("c3", 10)])
    mon = start_monitor(daemons, env)
    wait_marks(env, 0, ["c1"])
    wait_until(lambda: mon.source("rec1")["backlog"] == 2, 15, "rec1's backlog 2")

    def cli_ready():
        rep = status_json(env)
        rec1 = _src(rep, "rec1")
        return rep if rec1.get("backlog") == 2 and rep.get("jobs") else None
    report = wait_until(cli_ready, 15, "`status --json` with rec1's backlog 2 and the jobs")
    rec1, rec2 = _src(report, "rec1"), _src(report, "rec2")
    assert abs(rec1["lag_seconds"] - _age_seconds(20)) < 60, rec1
    assert rec2["backlog"] == 0 and rec2.get("lag_seconds", "missing") in (None, 0), rec2
    api_jobs = {j["source"]: j for j in mon.get_json("/api/v1/jobs")["jobs"]}
    cli_jobs = {j["source"]: j for j in report["jobs"]}
    assert set(cli_jobs) == {"rec1", "rec2"}
    for name, job in cli_jobs.items():
        assert set(job) == set(api_jobs[name]), (job, api_jobs[name])
        validate(job, "Job")
        for key in ("id", "source", "generation", "state", "attempt", "type", "status"):
            assert job[key] == api_jobs[name][key], (key, job, api_jobs[name])

    # --watch: the table, refreshed in place
    proc = subprocess.Popen(SYNCHROD + ["status", "--watch", "-c", str(env.config_path)], cwd=REPO,
                            env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out = bytearray()

    def read():
        while chunk := proc.stdout.read1(4096):
            out.extend(chunk)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: out.count(b"\x1b[2J") >= 2 and out.count(b"rec2") >= 2, 10,
                   "two refreshes of `status --watch`")
    finally:
        proc.kill()
        proc.wait(10)
        reader.join(5)
    text = out.decode(errors="replace")
    tables = [t for t in text.replace("\x1b[H", "").split("\x1b[2J") if t.strip()]
    assert len(tables) >= 2, text
    for t in tables[:2]:
        assert "rec1" in t and "rec2" in t and "source" in t, t
    assert mon.daemon.stop() == 0
